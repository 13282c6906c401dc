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
    num, src = {}, {}
    for nb in notebooks():
        src[nb] = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        if m := re.search(r'^#\|\s*default_exp\s+(\w+)', src[nb], re.M): num[m[1]] = nb.name.split('_')[0]
    assert {'core', 'sft', 'runner', 'cli'} <= set(num), sorted(num)
    for nb in notebooks():
        if nb.parent.name == 'pipeline': continue
        n = nb.name.split('_')[0]
        for mod in re.findall(r'^\s*(?:from|import)\s+orion_nb\.(\w+)', src[nb], re.M):
            assert num[mod] <= n, f'{nb.name} imports orion_nb.{mod} (notebook {num[mod]})'

def test_ci_runs_readme_test_command():
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci/run').read_text()
    assert 'make test' in readme and 'make repro' in readme
    assert re.search(r'^make test$', ci, re.M)

# --- Habits, as tests ---------------------------------------------------------------------------------------------
LIB_NBS = sorted((ROOT/'nbs').glob('[0-9][0-9]*_*.ipynb'))
PIPE_NBS = sorted((ROOT/'nbs'/'pipeline').glob('[0-9]*.ipynb'))   # as orion finds them (runner.pipeline_notebooks)

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
    from orion_nb.runner import declared_parameters
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
    from orion_nb.runner import declared_parameters
    mod, name = const.split('.')
    defaults = {nb.stem: ast.literal_eval(d[param]['default']) for nb in PIPE_NBS if param in (d := declared_parameters(nb))}
    assert defaults and set(defaults.values()) == {getattr(importlib.import_module(f'orion_nb.{mod}'), name)}, defaults

def test_parameters_cells_rendered_from_config():
    "Each pipeline notebook's parameters cell is exactly what `orion_nb.config` renders: a parameter is declared once, as a config field."
    from orion_nb.config import parameters_cell_for, stages_of, parameter_table
    from orion_nb.runner import parameters_cell
    assert stages_of(parameter_table()) == [nb.stem for nb in PIPE_NBS]
    bad = [nb.name for nb in PIPE_NBS if parameters_cell(nb) != parameters_cell_for(nb.stem)]
    assert not bad, f'{bad}: parameters cells differ from orion_nb/config.py: run `python -m orion_nb.config --write nbs/pipeline`'

def test_new_parameter_is_one_field():
    "A field added to the configuration is declared by its stage's parameters cell and checked by `params`, with nothing else written."
    import dataclasses
    from orion_nb.config import CONCERNS, COUNT, checking_rules, param, parameter_table, parameters_cell_for
    from orion_nb.params import _value_error
    extra = dataclasses.make_dataclass('ExtraConfig', [('extra_k', list[int], param([2], 'extra samples per question', range=COUNT, nonempty=True, stages='07_evaluate'))])
    t = parameter_table(CONCERNS + (extra,))
    assert parameters_cell_for('07_evaluate', t).splitlines()[-1] == 'extra_k = [2]                        # extra samples per question'
    assert 'extra_k' not in parameters_cell_for('06_train', t)
    r = checking_rules(t)
    assert (r['ranges']['extra_k'], r['items']['extra_k'], 'extra_k' in r['nonempty']) == ('1..1024', int, True)
    assert checking_rules() == {k: {n: v for n, v in d.items() if n != 'extra_k'} if isinstance(d, dict) else tuple(n for n in d if n != 'extra_k') for k, d in r.items()}
    assert _value_error('eval_k', []) == 'is empty; give at least one value'   # the rules params.py checks with are these

def test_every_parameter_is_checked():
    "Each declared number has a range, each list an item type, each prompt its placeholders, and every default passes its own check."
    import ast
    from orion_nb.runner import declared_parameters
    from orion_nb.params import ITEMS, PROMPTS, range_of, param_errors
    decl = {k: v for nb in PIPE_NBS for k, v in declared_parameters(nb).items()}
    vals = {k: ast.literal_eval(v['default']) for k, v in decl.items()}
    assert not [k for k, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and not range_of(k)]
    assert not [k for k, v in vals.items() if isinstance(v, list) and k not in ITEMS]
    assert not [k for k in vals if k.endswith('_prompt') and k not in PROMPTS]
    assert param_errors({k: v for k, v in vals.items() if not k.endswith(('_dir', '_path'))}, decl, 'defaults',
                        base=ROOT/'nbs'/'pipeline') == []   # a notebook's defaults are relative to its folder

# --- Tests next to the method (issue 27) ----------------------------------------------------------------------------
def public_defs(source: str) -> list[str]:
    "Names of the public functions and classes defined at the top level of a cell (`@patch`ed methods included)."
    import ast
    code = '\n'.join(l for l in source.splitlines() if not l.lstrip().startswith(('%', '!')))
    return [n.name for n in ast.parse(code).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith('_')]

def untested(nb) -> list[str]:
    "Public definitions of `nb`'s exported cells whose name no later code cell mentions before the next exported cell."
    srcs, out = cells(nb), []
    is_exp = [bool(re.match(r'\s*#\|\s*export', s)) for s in srcs]
    for i, s in enumerate(srcs):
        if not is_exp[i]: continue
        nxt = next((j for j in range(i + 1, len(srcs)) if is_exp[j]), len(srcs))
        after = '\n'.join(srcs[i + 1:nxt])
        out += [n for n in public_defs(s) if not re.search(rf'\b{re.escape(n)}\b', after)]
    return out

def test_untested_detected():
    nb = {'cells': [{'cell_type': 'code', 'source': s, 'metadata': {}} for s in
                    ['#| export\ndef f(): pass\nclass C: pass\ndef _g(): pass', 'f()', '#| export\ndef h(): pass', 'C(); h()']]}
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)/'x.ipynb'; p.write_text(json.dumps(nb))
        assert untested(p) == ['C']   # `C` is used, but only after the next exported cell

# Public definitions with no check right after them. Keep this list short: add a check after the definition and drop
# the name.
UNTESTED = {
    '17_gates': ['ship_snapshots'],   # needs trained snapshots: checked through `ship_student`'s toy build further down its notebook
    '47_runner': ['run_stage', 'run_pipeline'],   # run notebooks in kernels: checked by tests/test_report.py (run_stage through run_pipeline)
}

@pytest.mark.parametrize('nb', LIB_NBS, ids=lambda p: p.stem)
def test_definitions_checked_next_to_them(nb):
    "Every public definition of an exported cell is used by a test cell before the next exported cell (or is a named exception)."
    got, allowed = untested(nb), UNTESTED.get(nb.stem, [])
    assert not [n for n in got if n not in allowed], f'{nb.stem}: add a check right after {[n for n in got if n not in allowed]}'
    assert not [n for n in allowed if n not in got], f'{nb.stem}: {[n for n in allowed if n not in got]} are checked now: drop them from UNTESTED'

def code_lines(cell: str) -> int:
    "Lines of code in a cell: its non-blank lines, less the `#|` directives."
    return sum(1 for l in cell.splitlines() if l.strip() and not re.match(r'\s*#\|', l))

def test_exported_cells_stay_small(capsys):
    "Exported cells' lines of code across all notebooks (fastcore's are 4-8): median at most 8, 90th percentile at most 15."
    import statistics
    sizes = sorted(code_lines(s) for nb in notebooks() for s in exported(nb))
    med, p90 = statistics.median(sizes), sizes[int(0.9 * (len(sizes) - 1))]
    with capsys.disabled(): print(f'\nexported cells: {len(sizes)}, lines of code median {med}, p90 {p90}, largest {sizes[-5:]}')
    assert med <= 8 and p90 <= 15, f'median {med} (at most 8), p90 {p90} (at most 15): split the largest cells'

def test_modules_stay_under_500_lines():
    "No module of orion_nb (the generated `_modidx.py` aside) is over 500 lines: a longer one is cut along its seams into notebooks of its own."
    long = {p.name: n for p in sorted((ROOT/'orion_nb').glob('*.py')) if p.name != '_modidx.py' and (n := len(p.read_text().splitlines())) > 500}
    assert not long, f'modules over 500 lines: {long}'

def test_contributing_map_names_every_module():
    "CONTRIBUTING's map of the code names each module of orion_nb once, and nothing that is not one."
    text = (ROOT/'CONTRIBUTING.md').read_text()
    table = text.split('## Map of the code', 1)[1].split('\n## ', 1)[0]
    named = [m for row in table.splitlines() if row.startswith('| ') and not row.startswith('| layer')
             for m in re.findall(r'`(\w+)`', re.sub(r'\([^()]*\)', '', row.split('|')[2]))]
    modules = {p.stem for p in (ROOT/'orion_nb').glob('*.py') if not p.stem.startswith('_')}
    assert sorted(named) == sorted(modules), (set(named) ^ modules, [m for m in named if named.count(m) > 1])

def test_parameter_reference_is_generated():
    "docs/parameters.md is the configuration's parameter reference as `orion_nb.config` renders it."
    from orion_nb.config import parameters_markdown
    assert (ROOT/'docs'/'parameters.md').read_text() == parameters_markdown() + '\n', \
        'docs/parameters.md is stale: run python -m orion_nb.config --docs docs/parameters.md'
