"`orion run`: validation before work, papermill stages, HTML reports, unchanged stages not redone, resume."
import json, re, subprocess, sys, textwrap
from pathlib import Path
import nbformat, pytest
from orion_nb.core import process_alive
from orion_nb.cli import main
from orion_nb.runner import run_pipeline

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
    assert m['stages']['01_b']['status'] == 'failed'               # the failed stage is marked so
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
    assert "bad.yaml:2: unknown parameter 'sede'" in capsys.readouterr().err

@pytest.mark.parametrize('params', sorted((ROOT/'params').glob('*.yaml')), ids=lambda p: p.name)
def test_params_files_validate(params, capsys):
    "Every committed parameter file passes `orion check`, but for a traces file the user brings (named, with its line)."
    code, err = main(['check', str(params), '--notebooks', str(ROOT/'nbs'/'pipeline')]), capsys.readouterr().err
    if 'teacher_traces_path' in params.read_text(): assert code == 2 and re.search(r"yaml:\d+: parameter 'teacher_traces_path': no file at", err), err
    else: assert code == 0, err

def test_failing_stage_is_short_and_marked(tmp_path, pipe, capsys):
    "A failing stage: a few lines naming the stage, the cell and the error; the traceback in its log; the manifest says failed."
    pf = tmp_path/'p.yaml'; pf.write_text('run_name: r\nfail: true\n')
    code = main(['run', str(pf), '--notebooks', str(pipe), '--runs', str(tmp_path/'runs'), '--reports', str(tmp_path/'reports')])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) <= 3, err
    assert 'stage 01_b failed in cell 3' in err and 'AssertionError: asked to fail' in err and 'logs/01_b.log' in err, err
    st = json.loads((tmp_path/'runs/r/manifest.json').read_text())['stages']['01_b']
    assert st['status'] == 'failed' and 'asked to fail' in st['error'] and st['log'] == 'logs/01_b.log'
    assert 'assert not fail' in (tmp_path/'runs/r/logs/01_b.log').read_text()
    assert 'failed' in (tmp_path/'reports/r/index.html').read_text() and (tmp_path/'reports/r/01_b.html').is_file()

def orion_cli(*args, **kw):
    "`orion` as a user runs it: a process of its own."
    return subprocess.Popen([sys.executable, '-c', 'import sys; from orion_nb.cli import main; sys.exit(main())', *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def test_clean_run_prints_no_kernel_errors(tmp_path, pipe):
    pf = tmp_path/'p.yaml'; pf.write_text('run_name: r\n')
    p = orion_cli('run', str(pf), '--notebooks', str(pipe), '--runs', str(tmp_path/'runs'), '--reports', str(tmp_path/'reports'))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and 'ERROR' not in err and 'KeyboardInterrupt' not in err, err

TICKS = "import time, pathlib\nt = pathlib.Path(run_dir)/'ticks'\nwhile True:\n    t.open('a').write('x'); time.sleep(0.1)"   # a stage that never ends

def run_until(tmp_path, pipe, body, marker):
    "`orion run` as a process of its own, its second stage running `body`, once `marker` exists in the run folder: (process, marker, its arguments)."
    import time
    make_nb(pipe/'01_b.ipynb', "run_dir = ''  # run directory\n", body)
    pf = tmp_path/'p.yaml'; pf.write_text('run_name: r\n')
    args = ['run', str(pf), '--notebooks', str(pipe), '--runs', str(tmp_path/'runs'), '--reports', str(tmp_path/'reports')]
    p, f, t0 = orion_cli(*args), tmp_path/'runs/r'/marker, time.time()
    while not f.exists() and time.time() - t0 < 120 and p.poll() is None: time.sleep(0.2)
    assert f.exists(), p.stderr.read() if p.poll() is not None else f'no {marker} after 120 s'
    return p, f, args

@pytest.mark.parametrize('sig', ['SIGTERM', 'SIGINT'])
def test_killing_orion_stops_its_kernel(tmp_path, pipe, sig):
    "A stage writing a tick every 0.1 s: once `orion` is killed, no more ticks come, and the stage is marked interrupted."
    import signal, time
    p, ticks, _ = run_until(tmp_path, pipe, TICKS, 'ticks')
    p.send_signal(getattr(signal, sig)); p.communicate(timeout=60)
    time.sleep(0.5); n = len(ticks.read_text()); time.sleep(1.5)
    assert len(ticks.read_text()) == n, 'the kernel kept running after orion was killed'
    assert p.returncode != 0
    assert json.loads((tmp_path/'runs/r/manifest.json').read_text())['stages']['01_b']['status'] == 'interrupted'

def test_dry_run_runs_nothing(tmp_path, pipe, capsys):
    "`orion run --dry-run`: which stages would run, nothing executed, no run folder made."
    pf = tmp_path/'p.yaml'; pf.write_text('run_name: r\nn: 3\n')
    args = ['--notebooks', str(pipe), '--runs', str(tmp_path/'runs'), '--reports', str(tmp_path/'reports')]
    assert main(['run', str(pf), '--dry-run', *args]) == 0
    out = capsys.readouterr().out
    assert '00_a: would run' in out and '01_b: would run' in out and not (tmp_path/'runs').exists() and not (tmp_path/'reports').exists()
    assert main(['run', str(pf), *args]) == 0; capsys.readouterr()
    assert main(['run', str(pf), '--dry-run', *args]) == 0
    assert '00_a: unchanged' in capsys.readouterr().out

def test_dry_run_estimates_the_api_teacher(tmp_path, monkeypatch, capsys):
    "Before any request: how many, how many tokens at most, and what they cost at most at the prices given."
    monkeypatch.chdir(ROOT)
    pf = tmp_path/'api.yaml'
    pf.write_text((ROOT/'params'/'qwen2.5-1.5b-r1-api.yaml').read_text().replace('teacher_price_output: 2.19', 'teacher_price_output: 3.0'))
    assert main(['run', str(pf), '--dry-run', '--runs', str(tmp_path/'runs'), '--reports', str(tmp_path/'reports')]) == 0
    out = capsys.readouterr().out
    from orion_nb.params import load_params
    p = load_params(pf)
    n, budget = p['train_n'] * p['teacher_k'], p['teacher_max_new_tokens']
    assert f'02_teacher: would send {n} requests' in out and f'at most {n * budget:,} completion tokens' in out
    assert f'at most ${n * budget * 3.0 / 1e6:,.2f} for completions' in out and f"spend cap ${p['teacher_spend_cap']:,.2f}" in out
    ns, nc = p['train_n'] * p['short_k'], p['train_n'] * p.get('correction_attempts', 1)      # the short teacher's and the corrector's jobs
    assert f"| short CoTs: would send {ns} requests: at most {ns * p['short_max_new_tokens'] if 'short_max_new_tokens' in p else ns * 1024:,} completion tokens" in out
    assert f"04b_corrections: corrections: would send at most {nc} requests: at most {nc * p['correction_max_new_tokens']:,} completion tokens" in out
    assert 'corrections' not in out.split('02_teacher:')[1].split('\n')[0]   # each stage bounds its own jobs
    assert not (tmp_path/'runs').exists()

@pytest.mark.parametrize('where', ['root', 'elsewhere'])
def test_relative_folders_resolve_against_the_callers_directory(tmp_path, pipe, monkeypatch, capsys, where):
    "`make repro` passes relative `--runs` / `--reports`: the run, its logs and every page land under the caller's directory, named relative to it."
    (tmp_path/'p.yaml').write_text('run_name: r\nn: 3\n')
    cwd = tmp_path if where == 'root' else tmp_path/'elsewhere'
    cwd.mkdir(exist_ok=True); monkeypatch.chdir(cwd)
    up = '' if where == 'root' else '../'
    assert main(['run', f'{up}p.yaml', '--notebooks', f'{up}pl', '--runs', 'runs', '--reports', 'reports']) == 0, capsys.readouterr().err
    run, rep = cwd/'runs'/'r', cwd/'reports'/'r'
    assert (run/'00_a'/'count.txt').read_text() == 'x' and (run/'logs'/'00_a.log').is_file()
    assert sorted(p.name for p in rep.glob('*.html')) == ['00_a.html', '01_b.html', 'index.html']
    assert not list((tmp_path/'pl').rglob('*.html')) and not (tmp_path/'pl'/'runs').exists()   # nothing inside the notebooks' folder
    for page in rep.glob('*.html'):       # reports that travel: no absolute path of the machine that ran them
        assert str(tmp_path) not in page.read_text(), page.name
    assert "runs/r" in (rep/'00_a.html').read_text()
    assert json.loads((rep/'manifest.json').read_text())['params_file'] == f'{up}p.yaml'

def test_kill_9_of_orion_leaves_no_worker(tmp_path, pipe):
    "`kill -9` of `orion` while a stage's spawned job worker runs: the kernel and the worker end within seconds."
    import signal, time
    p, pids, _ = run_until(tmp_path, pipe, "import os, time, pathlib\nfrom orion_nb.jobs import job_pool\npool = job_pool(1, 1); f = pool.submit(time.sleep, 600)\n"
                           "while not pool._processes: time.sleep(0.1)\n"
                           "pathlib.Path(run_dir, 'pids').write_text(' '.join(map(str, [os.getpid(), *pool._processes])))\nf.result()", 'pids')
    kernel, *workers = map(int, pids.read_text().split())
    assert workers and all(map(process_alive, [kernel, *workers]))
    p.send_signal(signal.SIGKILL); p.communicate(timeout=60)
    t0 = time.time()
    while any(map(process_alive, [kernel, *workers])) and time.time() - t0 < 20: time.sleep(0.2)
    assert not any(map(process_alive, [kernel, *workers])), f'still running after kill -9 of orion: {[q for q in [kernel, *workers] if process_alive(q)]}'

def test_missing_or_changed_output_reruns_its_stage_and_later(tmp_path, pipe):
    "A stage is unchanged only while the files it wrote are as it left them: deleting or editing one redoes it and every later stage."
    count = lambda s: (tmp_path/'runs/r'/s/'count.txt').read_text()
    run(tmp_path, pipe, 'run_name: r\n')
    (tmp_path/'runs/r/00_a/count.txt').unlink()                       # a deleted output
    run(tmp_path, pipe, 'run_name: r\n')
    assert (count('00_a'), count('01_b')) == ('x', 'xx')
    with open(tmp_path/'runs/r/01_b/count.txt', 'a') as f: f.write('y')   # an output changed in place
    run(tmp_path, pipe, 'run_name: r\n')
    assert (count('00_a'), count('01_b')) == ('x', 'xxyx')
    run(tmp_path, pipe, 'run_name: r\n')                              # untouched: nothing redone
    assert (count('00_a'), count('01_b')) == ('x', 'xxyx')

def test_second_run_on_the_same_folder_is_refused(tmp_path, pipe, capsys):
    "Two `orion run` on one run folder: the second says so and exits, writing nothing; the first goes on."
    import signal
    p, ticks, args = run_until(tmp_path, pipe, TICKS, 'ticks')
    try:
        m = (tmp_path/'runs/r/manifest.json').read_text()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert 'is being written by another orion run' in err and f'pid {p.pid}' in err, err
        assert (tmp_path/'runs/r/manifest.json').read_text() == m and (tmp_path/'runs/r/00_a/count.txt').read_text() == 'x'
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM); p.communicate(timeout=60)

def test_interrupted_run_says_one_line(tmp_path):
    "An interrupt that leaves papermill's cell task unretrieved (as a kill during 03_exposure did: 150-270 lines of asyncio) prints one line."
    code = textwrap.dedent('''
        import asyncio, sys
        import orion_nb.cli as R
        def interrupted(*a, **kw):
            async def cell(): raise RuntimeError('CellExecutionError: the cell was interrupted')
            loop = asyncio.new_event_loop(); t = loop.create_task(cell()); loop.run_until_complete(asyncio.sleep(0.01))
            R._orphan = t                   # never retrieved: asyncio reports it when the task is collected at exit
            raise KeyboardInterrupt('SIGTERM')
        R.run_pipeline = interrupted
        sys.exit(R.main(['run', 'params/tiny.yaml']))
        ''')
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and r.stderr.strip().splitlines() == ['orion: interrupted (SIGTERM); rerun to resume'], r.stderr[-2000:]
