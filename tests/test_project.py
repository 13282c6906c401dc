"The project's own rules: one pin set, a resolvable environment.yml, clean notebooks that keep papermill's tag."
import configparser, json, re, shlex, subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def settings():
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini'); return cfg['DEFAULT']

def test_one_pin_set():
    "Every requirement is pinned exactly, nbdev stays on 2.x (settings.ini), and environment.yml reuses the pins."
    cfg = settings()
    reqs = shlex.split(cfg['requirements']) + shlex.split(cfg['dev_requirements'])
    assert all(re.fullmatch(r'[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+]*', r) for r in reqs), reqs
    nbdev = next(r for r in reqs if r.startswith('nbdev=='))
    assert nbdev.split('==')[1].startswith('2.'), 'nbdev 3 does not read settings.ini'
    env = yaml.safe_load((ROOT/'environment.yml').read_text())
    pip = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))
    assert pip == ['-e .[dev]'], 'environment.yml must install the pins from settings.ini, not its own'

def test_installed_versions_match_pins():
    from importlib.metadata import version
    for r in shlex.split(settings()['requirements']):
        name, want = r.split('==')
        assert version(name).split('+')[0] == want, f'{name}: installed {version(name)}, pinned {want}'

@pytest.mark.timeout(300)
def test_environment_yml_resolves(tmp_path):
    "pip resolves environment.yml's pip section as a whole (what `conda env create` would install)."
    env = yaml.safe_load((ROOT/'environment.yml').read_text())
    pip = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))
    assert 'python=3.11' in env['dependencies'] and 'pip' in env['dependencies']
    args = [a for spec in pip for a in shlex.split(spec)]
    report = tmp_path/'report.json'
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--quiet',
                        '--report', str(report), *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {i['metadata']['name'].lower().replace('_', '-'): i['metadata']['version'] for i in json.loads(report.read_text())['install']}
    for req in shlex.split(settings()['requirements']):
        name, want = req.split('==')
        assert got[name.lower()].split('+')[0] == want

def test_nbdev_clean_keeps_parameters_tag(tmp_path):
    "`make clean` (nbconvert + nbdev_clean with this repo's settings) strips outputs, keeps the `parameters` tag."
    nb = {'cells': [{'cell_type': 'code', 'execution_count': 3, 'id': 'abc', 'source': ['n = 1'],
                     'metadata': {'tags': ['parameters'], 'scrolled': True},
                     'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': ['hi\n']}]}],
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    d = ROOT/'nbs'/f'_tmp_clean_{tmp_path.name}'; d.mkdir()
    try:
        p = d/'t.ipynb'; p.write_text(json.dumps(nb))
        subprocess.run(['make', '-s', 'clean', f'NBS={d}'], cwd=ROOT, check=True)
        cell = json.loads(p.read_text())['cells'][0]
    finally:
        for f in d.iterdir(): f.unlink()
        d.rmdir()
    assert cell['metadata'] == {'tags': ['parameters']}
    assert cell['outputs'] == [] and cell['execution_count'] is None

def notebooks():
    return sorted(p for p in (ROOT/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)

@pytest.mark.parametrize('nb', notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_committed_clean(nb):
    cells = json.loads(nb.read_text())['cells']
    assert not any(c.get('outputs') or c.get('execution_count') for c in cells), f'{nb}: run `make clean`'

def test_notebooks_import_only_lower_numbers():
    "A library notebook imports only from modules of lower-numbered notebooks (05a after 05, before 06)."
    num = {}
    for nb in notebooks():
        src = ''.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'])
        m = re.search(r'#\|\s*default_exp\s+(\S+)', src)
        if m: num[m[1]] = nb.name.split('_')[0]
    for nb in notebooks():
        if nb.parent.name == 'pipeline': continue
        n = nb.name.split('_')[0]
        src = ''.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'])
        for mod in re.findall(r'(?:from|import)\s+orion_nb\.(\w+)', src):
            assert num.get(mod, '') < n, f'{nb.name} imports orion_nb.{mod} (notebook {num.get(mod)})'

def test_ci_runs_readme_test_command():
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci/run').read_text()
    assert 'make test' in readme and 'make repro' in readme
    assert re.search(r'^make test$', ci, re.M)

# --- Habits, as tests ---------------------------------------------------------------------------------------------
LIB_NBS = sorted((ROOT/'nbs').glob('[0-9][0-9]*_*.ipynb'))
PIPE_NBS = sorted((ROOT/'nbs'/'pipeline').glob('[0-9]*.ipynb'))   # as orion finds them (report.pipeline_notebooks)

def cells(nb, kind='code'):
    return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == kind]

def exported(nb):
    return [s for s in cells(nb) if re.match(r'\s*#\|\s*export', s)]

@pytest.mark.parametrize('nb', LIB_NBS, ids=lambda p: p.stem)
def test_summary_is_one_line(nb):
    "The `> summary` under a library notebook's title is one line (nbdev makes it the module docstring)."
    first = cells(nb, 'markdown')[0].strip().splitlines()
    quoted = [i for i, l in enumerate(first) if l.startswith('>')]
    assert len(quoted) == 1 and (quoted[0] + 1 == len(first) or not first[quoted[0] + 1].strip()), first

def unused_imports(source: str) -> list[str]:
    "Names imported at the top level of `source` that nothing else in it uses."
    import ast
    tree = ast.parse(source)
    imported = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, 'module', None) != '__future__':
            for a in node.names: imported[(a.asname or a.name).split('.')[0]] = node.lineno
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    used |= set(re.findall(r"['\"](\w+)['\"]", source))   # names in strings: __all__, string annotations
    return sorted(n for n in imported if n not in used)

def test_unused_imports_detected():
    assert unused_imports('import os, re\nfrom a import b\nre.sub(1)\n') == ['b', 'os']

@pytest.mark.parametrize('mod', sorted(p for p in (ROOT/'orion_nb').glob('*.py') if not p.name.startswith('_')), ids=lambda p: p.stem)
def test_no_unused_imports(mod):
    assert unused_imports(mod.read_text()) == []

def test_library_cells_are_small():
    "The 90th percentile of library code cells (exported) is at most 20 lines."
    sizes = sorted(len(s.strip().splitlines()) for nb in LIB_NBS for s in exported(nb))
    p90 = sizes[int(0.9 * (len(sizes) - 1))]
    assert p90 <= 20, f'90th percentile {p90} lines; largest {sizes[-5:]}'

def test_pipeline_cells_are_small():
    "Pipeline notebooks read as paper sections: every code cell but papermill's parameters cell has at most 8 lines, 08_summary under 60 in all."
    for nb in PIPE_NBS:
        code = [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code' and 'parameters' not in c['metadata'].get('tags', [])]
        sizes = [len(''.join(c['source']).splitlines()) for c in code]
        assert max(sizes, default=0) <= 8, f'{nb.stem}: code cells of {sizes} lines (at most 8 each; logic goes into the library)'
        if nb.stem == '08_summary': assert sum(sizes) < 60, f'08_summary: {sum(sizes)} code lines (under 60)'

def test_shared_parameters_agree():
    "A parameter declared by several pipeline notebooks has one default (and one meaning) everywhere."
    from orion_nb.report import declared_parameters
    seen = {}
    for nb in PIPE_NBS:
        for k, v in declared_parameters(nb).items(): seen.setdefault(k, {})[nb.stem] = v['default']
    bad = {k: v for k, v in seen.items() if len(set(v.values())) > 1}
    assert not bad, bad

@pytest.mark.parametrize('param,const', [('solve_prompt', 'models.SOLVE_PROMPT'), ('teacher_prompt', 'teacher.TEACHER_PROMPT'),
                                         ('reflect_prompt', 'reflection.REFLECT_PROMPT'), ('no_error_prompt', 'reflection.NO_ERROR_PROMPT'),
                                         ('lema_prompt', 'recipes.LEMA_PROMPT'), ('short_prompt', 'baselines.SHORT_PROMPT'),
                                         ('correction_prompt', 'baselines.CORRECTION_PROMPT'), ('judge_prompt', 'analysis.JUDGE_PROMPT')])
def test_prompt_parameters_default_to_library(param, const):
    "Each prompt template is a parameter whose default is the library's constant, so the two cannot drift apart."
    import ast, importlib
    from orion_nb.report import declared_parameters
    mod, name = const.split('.')
    defaults = {nb.stem: ast.literal_eval(d[param]['default']) for nb in PIPE_NBS if param in (d := declared_parameters(nb))}
    assert defaults and set(defaults.values()) == {getattr(importlib.import_module(f'orion_nb.{mod}'), name)}, defaults

def test_every_parameter_is_checked():
    "Each declared number has a range, each list an item type, each prompt its placeholders, and every default passes its own check."
    import ast
    from orion_nb.report import declared_parameters
    from orion_nb.params import ITEMS, PROMPTS, range_of, param_errors
    decl = {k: v for nb in PIPE_NBS for k, v in declared_parameters(nb).items()}
    vals = {k: ast.literal_eval(v['default']) for k, v in decl.items()}
    assert not [k for k, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and not range_of(k)]
    assert not [k for k, v in vals.items() if isinstance(v, list) and k not in ITEMS]
    assert not [k for k in vals if k.endswith('_prompt') and k not in PROMPTS]
    assert param_errors({k: v for k, v in vals.items() if not k.endswith(('_dir', '_path'))}, decl, 'defaults',
                        base=ROOT/'nbs'/'pipeline') == []   # a notebook's defaults are relative to its folder
