"`orion run`: validation before work, papermill stages, HTML reports, unchanged stages not redone, resume."
import json, re, subprocess, sys
from pathlib import Path
import nbformat, pytest
from orion_nb.report import run_pipeline, main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'/'data'

def make_nb(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell('# stage'), nbformat.v4.new_code_cell(params_src, metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell(body_src)]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nbformat.write(nb, str(path))

@pytest.fixture
def pipe(tmp_path):
    d = tmp_path/'pl'; d.mkdir()
    make_nb(d/'00_a.ipynb', "run_dir = ''  # run directory\nn = 2  # how many\n",
            "from pathlib import Path\np = Path(run_dir)/'00_a'; p.mkdir(exist_ok=True)\n"
            "with open(p/'count.txt', 'a') as f: f.write('x')\n(p/'summary.html').write_text(f'<table><tr><td>n={n}</td></tr></table>')")
    make_nb(d/'01_b.ipynb', "run_dir = ''  # run directory\nfail = False  # fail on purpose\n",
            "from pathlib import Path\np = Path(run_dir)/'01_b'; p.mkdir(exist_ok=True)\n"
            "with open(p/'count.txt', 'a') as f: f.write('x')\nassert not fail, 'asked to fail'")
    return d

def run(tmp_path, pipe, params, **kw):
    pf = tmp_path/'p.yaml'; pf.write_text(params)
    return run_pipeline(pf, pipe, tmp_path/'runs', tmp_path/'reports', log=lambda *a: None, **kw)

@pytest.mark.timeout(600)
def test_run_cache_and_resume(tmp_path, pipe):
    idx = run(tmp_path, pipe, 'run_name: r\nn: 3\n')
    page = idx.read_text()
    assert 'n=3' in page and "href='00_a.html'" in page and (idx.parent/'01_b.html').is_file()
    count = lambda s: (tmp_path/'runs/r'/s/'count.txt').read_text()
    m = json.loads((tmp_path/'runs/r/manifest.json').read_text())
    assert m['params'] == {'run_name': 'r', 'n': 3} and m['stages']['00_a']['status'] == 'done' and 'torch' in m['packages']
    run(tmp_path, pipe, 'run_name: r\nn: 3\n')                    # unchanged: nothing redone
    assert (count('00_a'), count('01_b')) == ('x', 'x')
    with pytest.raises(Exception, match='asked to fail'):
        run(tmp_path, pipe, 'run_name: r\nn: 3\nfail: true\n')      # stage b changes and fails
    assert count('00_a') == 'x'                                    # stage a was not redone
    m = json.loads((tmp_path/'runs/r/manifest.json').read_text())
    assert m['stages']['01_b']['status'] == 'running'              # the interrupted stage is marked unfinished
    run(tmp_path, pipe, 'run_name: r\nn: 3\n')                    # resumes: only b runs again
    assert (count('00_a'), count('01_b')) == ('x', 'xxx')
    run(tmp_path, pipe, 'run_name: r\nn: 4\n')                    # a changes: a and everything after it rerun
    assert (count('00_a'), count('01_b')) == ('xx', 'xxxx')

@pytest.mark.parametrize('params,msg', [
    ('run_name: r\nnn: 3\n', "unknown parameter 'nn' (did you mean 'n'?)"),
    ('run_name: r\nn: "3"\n', "parameter 'n': expected int (default 2), got str"),
    ('run_name: r\nfail: 1\n', "parameter 'fail': expected bool"),
    ('- a\n- b\n', 'expected a mapping of parameter names to values'),
])
def test_bad_params_stop_before_work(tmp_path, pipe, params, msg):
    with pytest.raises(ValueError, match=re.escape(msg)): run(tmp_path, pipe, params)
    assert not (tmp_path/'runs').exists()

def test_unparseable_parameter_is_an_error(tmp_path, pipe):
    "papermill silently skips `x = 1  # a = b`; declared_parameters refuses instead of dropping the parameter."
    make_nb(pipe/'02_c.ipynb', "run_dir = ''  # run directory\nshare = 0.2  # long share (0.2 = 1:4)\n", "pass")
    with pytest.raises(ValueError, match=r"cannot parse the parameters \['share'\]"): run(tmp_path, pipe, 'run_name: r\n')

def test_cli_check(tmp_path, pipe, capsys):
    pf = tmp_path/'bad.yaml'; pf.write_text('n: 1\nsede: 2\n')
    assert main(['check', str(pf), '--notebooks', str(pipe)]) == 2
    assert "bad.yaml: unknown parameter 'sede'" in capsys.readouterr().err

@pytest.mark.parametrize('params', sorted((ROOT/'params').glob('*.yaml')), ids=lambda p: p.name)
def test_params_files_validate(params):
    "Every committed parameter file names only declared parameters, with values of the declared types."
    assert main(['check', str(params), '--notebooks', str(ROOT/'nbs'/'pipeline')]) == 0
