"The README cannot rot: its example runs, its accuracy table and claim equal the committed summary, its links resolve."
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT/'README.md'
DOCS = sorted((ROOT/'docs').glob('*.md'))
SUMMARY = ROOT/'reports'/'tiny'/'summary.json'
MAX_WORDS = 1200
FENCE = re.compile(r'^```(\w*)\n(.*?)^```', re.M | re.S)


def readme() -> str: return README.read_text(encoding='utf-8')
def summary() -> dict: return json.loads(SUMMARY.read_text())
def fenced(text: str, lang: str) -> list[str]: return [body for l, body in FENCE.findall(text) if l == lang]


def section(text: str, title: str) -> str:
    "The body of the `## title` section of `text`."
    m = re.search(rf'^## {re.escape(title)}\n(.*?)(?=^## |\Z)', text, re.M | re.S)
    assert m, f'README has no section "## {title}"'
    return m[1]


# --- the example --------------------------------------------------------------------------------------------------
def test_python_example_runs():
    "The README's first ```python block runs from the repository root, as a reader would paste it."
    blocks = fenced(readme(), 'python')
    assert blocks, 'README has no ```python block'
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
           'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    r = subprocess.run([sys.executable, '-c', blocks[0]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f'the README example failed (exit {r.returncode}):\n{r.stderr[-3000:]}'
    assert r.stdout.strip(), 'the README example printed nothing'


# --- the results: the table and the claim equal reports/tiny/summary.json ---------------------------------------
def pct(x: float) -> str: return f'{100 * x:.1f}'

def expected_cell(cell: dict) -> str:
    "A summary cell as the README writes it: mean ± half-width in %, one decimal (no interval for one seed)."
    hw = cell.get('ci95_half_width')
    return pct(cell['mean']) + ('' if hw is None else f' ± {pct(hw)}')

def accuracy_rows(text: str) -> dict:
    "{recipe key: world-test cell} from the README table whose header has a `world test` column."
    lines = section(text, 'What the embedded run shows').splitlines()
    head = next((i for i, l in enumerate(lines) if l.startswith('|') and 'world test' in l), None)
    assert head is not None, 'README: no accuracy table with a "world test" column under "What the embedded run shows"'
    cols = [c.strip() for c in lines[head].strip().strip('|').split('|')]
    col, rows = cols.index('world test'), {}
    for l in lines[head + 2:]:
        if not l.startswith('|'): break
        cells = [c.strip() for c in l.strip().strip('|').split('|')]
        key = re.search(r'`([^`]+)`', cells[0])
        assert key, f'README accuracy table: row {cells[0]!r} names no recipe in backticks, e.g. (`orion`)'
        assert key[1] not in rows, f'README accuracy table: recipe `{key[1]}` appears twice'
        rows[key[1]] = re.sub(r'\*', '', cells[col])
    return rows

def test_accuracy_table_matches_summary():
    "Each README cell equals summary.json's world_test mean (± 95 % half-width) x 100, one decimal; every recipe is there."
    want = {r: expected_cell(c) for r, c in summary()['accuracy']['world_test'].items()}
    got = accuracy_rows(readme())
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    stale = [f'  `{r}`: README has {got[r]!r}, {SUMMARY.relative_to(ROOT)} gives {want[r]!r}' for r in want if r in got and got[r] != want[r]]
    problems = ([f'  recipes in the summary but not in the README table: {missing}'] if missing else []) + \
               ([f'  rows in the README table that the summary does not have: {extra}'] if extra else []) + stale
    assert not problems, 'README accuracy table is out of date (update it from the regenerated reports):\n' + '\n'.join(problems)

def test_claim_matches_summary():
    "The README's words on the claim check say what summary.json's `claims` and `ablations` say, on the world test."
    s, text = summary(), section(readme(), 'What the embedded run shows')
    claim = s['claims']['world_test']
    verdict = 'claim is reproduced' if claim['reproduced'] else 'claim is not reproduced'
    assert verdict in text, f'README must say "{verdict}" (summary.json claims.world_test.reproduced = {claim["reproduced"]})'
    gap = f"{pct(abs(claim['gap']))} points {'above' if claim['gap'] >= 0 else 'below'}"
    assert gap in text, f'README must give ORION\'s gap to its closest rival `{claim["closest"]}` as "{gap}"'
    for name, by in s['ablations'].items():
        assert f"{abs(by['world_test']):.1f} points" in text, \
            f'README must give ORION minus `{name}` on the world test, {by["world_test"]:+.1f} points (summary.json ablations)'

def test_table_parser_finds_a_stale_cell():
    "The table check reports the differing cell, not just a mismatch."
    text = readme().replace(expected_cell(summary()['accuracy']['world_test']['orion']), '99.9 ± 0.1', 1)
    assert accuracy_rows(text)['orion'] == '99.9 ± 0.1'


def test_results_page_matches_summary():
    "docs/results.md quotes only cells of the summary (every `x ± y`), and its acceptance and target counts are the summary's."
    s, text = summary(), (ROOT/'docs'/'results.md').read_text(encoding='utf-8')
    cells = {expected_cell(c) for c in s['accuracy']['world_test'].values()}
    stale = [c for c in re.findall(r'\d+\.\d ± \d+\.\d', text) if c not in cells]
    assert not stale, f'docs/results.md quotes accuracies that summary.json does not have: {stale}'
    for student, a in s['refinement_acceptance'].items():
        assert f"{a['survived']} of {a['refinements']}" in text, f'docs/results.md: {student} refinements passing, {a["survived"]} of {a["refinements"]}'
    for student, o in s['target_origins'].items():
        assert f"{o['refined']} of {sum(o.values())}" in text, f'docs/results.md: {student} targets the student wrote, {o["refined"]} of {sum(o.values())}'


# --- shape and links ----------------------------------------------------------------------------------------------
def test_readme_is_short():
    n = len(readme().split())   # what `wc -w README.md` counts
    assert n <= MAX_WORDS, f'README.md has {n} words; at most {MAX_WORDS}: move detail into docs/'

def test_commands_block():
    "The set-up-and-run commands, exactly as CI (.ci/run) runs them, are lines of a shell block."
    lines = {l.strip() for b in fenced(readme(), 'bash') for l in b.splitlines()}
    assert {'make test', 'make repro'} <= lines, 'README needs the lines `make test` and `make repro` in a ```bash block'

def links(path: Path) -> list[str]:
    "The link targets of a markdown file, outside fenced code."
    return re.findall(r'\[[^\]]*\]\(([^)\s]+)\)', FENCE.sub('', path.read_text(encoding='utf-8')))

def slug(heading: str) -> str:
    "GitHub's anchor for a heading."
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')

def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r'^#+ (.+)$', FENCE.sub('', path.read_text(encoding='utf-8')), re.M)}

def test_docs_exist_and_are_linked_from_readme():
    assert DOCS, 'no docs/*.md pages'
    linked = {(README.parent/t.split('#')[0]).resolve() for t in links(README) if not re.match(r'\w+:', t)}
    unlinked = [p.name for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f'docs pages not linked from README.md: {unlinked}'

@pytest.mark.parametrize('page', [README] + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    "Every relative link points to an existing file (and, with #anchor, to a heading of a markdown file)."
    bad = []
    for t in links(page):
        if re.match(r'[a-z]+:', t): continue                    # https:, mailto:
        file, _, anchor = t.partition('#')
        target = (page.parent/file).resolve() if file else page
        if not target.exists(): bad.append(f'{t}: no such file'); continue
        if anchor and target.suffix == '.md' and anchor not in anchors(target): bad.append(f'{t}: no such heading')
    assert not bad, f'{page.relative_to(ROOT)}: broken links:\n  ' + '\n  '.join(bad)


def test_make_lab_starts_jupyterlab_on_the_pipeline(tmp_path):
    "`make lab` (the README's way to step through the stages) starts a JupyterLab server on nbs/pipeline, as root too."
    import os, signal, subprocess, time
    env = {**os.environ, 'JUPYTER_RUNTIME_DIR': str(tmp_path), 'JUPYTER_CONFIG_DIR': str(tmp_path/'cfg')}
    p = subprocess.Popen(['make', '--no-print-directory', 'lab', 'LAB_ARGS=--no-browser --ServerApp.port=0 --ServerApp.ip=127.0.0.1'],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    out, t0 = '', time.time()
    try:
        while time.time() - t0 < 120 and p.poll() is None and 'http://127.0.0.1:' not in out: out += p.stdout.readline()
        assert 'http://127.0.0.1:' in out and 'pipeline' in out, out[-3000:]
    finally:
        os.killpg(p.pid, signal.SIGTERM); p.wait(30)
