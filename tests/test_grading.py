"Integration tests of `orion_nb.grading`: the audit on real labelled outputs, worker processes, threads, deadlines."
import multiprocessing as mp, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # the package when it is not pip-installed
from orion_nb.grading import (KNOWN_DISAGREEMENTS, GradePool, audit, extract_answer, grade, grade_many,
                              shared_pool)

DATA = ROOT.parent/'shared'/'data'/'model_outputs'/'p-align-qwen2.5-7b'
FILES = [DATA/'aime24-output.jsonl', DATA/'aime25-output.jsonl']
TOWER = r'\boxed{9^{9^{9^{9}}}}'   # sympy would try to compute this number


# --- the audit --------------------------------------------------------------------------------------------------

@pytest.mark.timeout(600)
@pytest.mark.skipif(not all(f.exists() for f in FILES), reason=f'real labelled outputs absent: {DATA}')
def test_audit_against_real_labels():
    a = audit(FILES, workers=2)
    assert a['n'] == 180
    lines = [f"{d['key']}: label={d['label']} ours={d['ours']} extracted={d['extracted']!r} theirs={d['theirs']}"
             for d in a['disagreements'] if d['reason'] is None]
    assert not a['unexplained'], 'disagreements without a documented reason:\n' + '\n'.join(lines)
    assert not a['stale'], f"KNOWN_DISAGREEMENTS entries that now agree with the label: {a['stale']}"
    assert a['agreement'] >= 0.95, a['agreement']
    assert all(isinstance(r, str) and len(r) > 40 for r in KNOWN_DISAGREEMENTS.values())


# --- equivalence ------------------------------------------------------------------------------------------------

CASES = [  # (output, gold, expected)
    # AIME: leading zeros
    (r'\boxed{25}', '025', True), (r'\boxed{025}', 25, True), (r'\boxed{073}', '073', True), (r'\boxed{26}', '025', False),
    # AMC and GSM-Hard: float golds
    (r'\boxed{27}', 27.0, True), (r'\boxed{-1}', -1.0, True), (r'\boxed{12.5}', 12.5, True),
    (r'\boxed{\frac{25}{2}}', 12.5, True), (r'\boxed{-3}', -3.0, True), (r'\boxed{3}', -3.0, False),
    (r'\boxed{2.3333}', 2.3333333333333335, True), (r'\boxed{\frac{7}{3}}', 2.3333333333333335, True),
    (r'\boxed{2.3}', 2.3333333333333335, False), (r'\boxed{1234567}', 1234567.0, True), (r'\boxed{1234500}', 1234567.0, False),
    # thousands separators
    (r'\boxed{1,234}', '1234', True), (r'\boxed{1234}', '1,234', True), (r'\boxed{1{,}234{,}567}', 1234567, True),
    (r'\boxed{\$1,234}', 1234, True), (r'\boxed{1,23}', 123, False),
    # LaTeX: fractions, roots, tuples, sets, units, text
    (r'\boxed{\dfrac{14}{3}}', r'\frac{14}{3}', True), (r'\boxed{14/3}', r'\frac{14}{3}', True),
    (r'\boxed{\frac{1}{\sqrt{2}}}', r'\frac{\sqrt{2}}{2}', True), (r'\boxed{\sqrt{27}}', r'3\sqrt{3}', True),
    (r'\boxed{(3, \frac{\pi}{2})}', r'\left( 3, \frac{\pi}{2} \right)', True),
    (r'\boxed{(\frac{\pi}{2}, 3)}', r'\left( 3, \frac{\pi}{2} \right)', False),
    (r'\boxed{\{3, 1, 2\}}', r'\{1, 2, 3\}', True), (r'\boxed{\{1, 2\}}', r'\{1, 2, 3\}', False),
    (r'\boxed{-2, 1}', '1,-2', True), (r'\boxed{90^\circ}', '90', True), (r'\boxed{\text{Evelyn}}', r'\text{Evelyn}', True),
    (r'\boxed{0.5}', r'\frac{1}{2}', True), (r'\boxed{\frac{1}{3}}', r'\frac{1}{2}', False),
    (r'\boxed{x^2+2x+1}', '(x+1)^2', True),
]

@pytest.mark.timeout(120)
@pytest.mark.parametrize('output,gold,expected', CASES)
def test_equivalence(output, gold, expected):
    assert grade(output, gold) is expected

@pytest.mark.timeout(120)
def test_equivalence_without_the_number_shortcut():
    "math-verify reaches the same verdicts on the numeric cases as the in-process comparison."
    for output, gold, expected in CASES[:20]:
        if gold == 2.3333333333333335 and '2.3333' in output: continue   # math-verify rounds to 6 places: stricter
        assert grade(output, gold, fast_numbers=False) is expected, (output, gold)


# --- extraction policy ------------------------------------------------------------------------------------------

def test_unclosed_think_has_no_answer():
    out = '<think>\nLet me compute. The sum is \\boxed{25}... wait, let me check again'
    assert extract_answer(out) is None
    assert grade(out, '025') is False
    assert extract_answer(out, think=None) == '25'

def test_think_policy():
    assert extract_answer(r'<think>\boxed{3}</think>The answer is \boxed{4}.') == '4'
    assert extract_answer(r'<think>\boxed{3}</think>So it is 3.') is None
    assert extract_answer(r'<think>\boxed{3}</think>So it is 3.', boxed_in_think=True) == '3'
    assert extract_answer(r'prompt template opened the block</think>\boxed{8}') == '8'

def test_last_complete_box_and_fallback_phrases():
    assert extract_answer(r'\boxed{1} then \boxed{\frac{a}{b}} and finally \boxed{\sqrt{') == r'\frac{a}{b}'
    assert extract_answer(r'\fbox{\{1, 2\}}') == r'\{1, 2\}'
    assert extract_answer('Final Answer: 17') is None
    assert extract_answer('Final Answer: 17', phrases=True) == '17'

@pytest.mark.timeout(120)
def test_model_output_is_never_run_as_code(tmp_path):
    payloads = [f"__import__('os').system('touch {tmp_path}/a')",
                f"(lambda: __import__('os').system('touch {tmp_path}/b'))()",
                f"eval(\"__import__('os').system('touch {tmp_path}/c')\")",
                f"\\text{{exec('import os; os.system(\"touch {tmp_path}/d\")')}}"]
    for p in payloads:
        assert grade(r'\boxed{' + p + '}', 0) is False and grade(r'\boxed{' + p + '}', 'x') is False
        assert grade('The answer is ' + p, 0, phrases=True) is False
        grade(r'\boxed{' + p + '}', p)   # even as its own gold
    assert list(tmp_path.iterdir()) == []

def test_bad_gold_is_a_data_error():
    with pytest.raises(ValueError, match='is empty'): grade(r'\boxed{1}', '')
    with pytest.raises(ValueError, match='must be str, int or float'): grade(r'\boxed{1}', [1])


# --- time bounds ------------------------------------------------------------------------------------------------

PATHOLOGICAL = {
    'power tower': (TOWER, {}),
    'nested brackets': (r'\boxed{' + '(' * 5000 + '1' + ')' * 5000 + '}', {}),
    'nested braces': (r'\boxed{' + '{' * 3000 + '1' + '}' * 3000 + '}', {}),
    'nested brackets, caps lifted': (r'\boxed{' + '[' * 400 + '1' + ']' * 400 + '}', dict(max_answer_len=10**7, max_depth=10**7)),
    'megabyte answer': ('x' * 10**6 + r'\boxed{' + '1+' * 500_000 + '1}', {}),
    'megabyte answer, caps lifted': (r'\boxed{' + '1+' * 500_000 + '1}', dict(max_answer_len=10**7)),
    'megabyte of braces': ('{' * 10**6, {}),
    'megabyte of unclosed boxes': (r'\boxed{' * 150_000, {}),
}

@pytest.mark.timeout(120)
@pytest.mark.parametrize('name', PATHOLOGICAL)
def test_pathological_answer_is_false_within_its_limit(name):
    output, kw = PATHOLOGICAL[name]
    limit = 2.0
    t = time.monotonic()
    assert grade(output, 1, timeout=limit, **kw) is False
    assert time.monotonic() - t < limit + 5

@pytest.mark.timeout(120)
def test_overrun_kills_and_replaces_the_worker():
    with GradePool(1) as pool:
        pool.wait_ready(); before = pool.pids
        assert grade(TOWER, 1, timeout=1, pool=pool) is False
        assert pool.replaced == 1 and pool.pids != before
        assert grade(r'\boxed{\frac{1}{2}}', 0.5, pool=pool) is True   # the fresh worker carries on


# --- parallel processes, threads, subprocesses ------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_grade_many_uses_worker_processes_and_keeps_order():
    outs, golds, want = [], [], []
    for i in range(30):
        outs += [rf'\boxed{{\frac{{{i}}}{{7}}}}', rf'\boxed{{({i}, {i + 1})}}', f'<think>\\boxed{{{i}}}', rf'\boxed{{{i:03d}}}']
        golds += [rf'\frac{{{2 * i}}}{{14}}', rf'({i}, {i + 2})', i, i]
        want += [True, False, False, True]
    with GradePool(2) as pool:
        pool.wait_ready()
        assert len(set(pool.pids)) == 2
        assert grade_many(outs, golds, pool=pool, progress=False) == want
        # two overrunning answers at once: each of the two worker processes took one, and both were replaced
        before = set(pool.pids)
        assert grade_many([TOWER, TOWER], [1, 1], pool=pool, timeout=1, progress=False) == [False, False]
        assert pool.replaced == 2 and not before & set(pool.pids)

@pytest.mark.timeout(300)
def test_grade_many_with_progress_bar_and_shared_pool(capsys):
    res = grade_many([r'\boxed{\sqrt{4}}', r'\boxed{3}', 'none'], [2, '3', 1], workers=2, progress=True)
    assert res == [True, True, False]
    assert 'grading' in capsys.readouterr().err
    assert shared_pool(2).n == 2

@pytest.mark.timeout(300)
def test_called_from_threads():
    results, errors = {}, []
    def work(i):
        try: results[i] = (grade(rf'\boxed{{\frac{{{i}}}{{2}}}}', i / 2), grade(TOWER, 1, timeout=1))
        except Exception as e: errors.append(e)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join(60)
    assert not errors and results == {i: (True, False) for i in range(4)}
    with ThreadPoolExecutor(4) as ex:   # grade_many itself from a worker thread
        assert ex.submit(grade_many, [r'\boxed{x+1}'] * 3, ['1+x'] * 3, progress=False).result(120) == [True] * 3

def _grade_in_child(_):
    return grade(r'\boxed{\frac{1}{2}}', 0.5), grade(TOWER, 1, timeout=1)

@pytest.mark.timeout(300)
def test_called_from_a_daemonic_process():
    with mp.get_context('spawn').Pool(1) as p:   # pool processes are daemonic: they may not use multiprocessing
        assert p.map(_grade_in_child, [0]) == [(True, False)]

@pytest.mark.timeout(300)
def test_called_from_a_subprocess():
    code = ('from orion_nb.grading import grade, grade_many; '
            r'print(grade(r"\boxed{025}", 25), grade(r"\boxed{9^{9^{9^{9}}}}", 1, timeout=1), '
            r'grade_many([r"\boxed{(1,2)}"], [r"\left(1,2\right)"], progress=False))')
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'True False [True]'
