"Integration tests of `orion_nb.arith`, `.steps` and `.localise`: world teacher traces, GSM8K reference solutions, real long CoTs, bounds, no eval."
import builtins, json, re, sys
import sympy, sympy.parsing.sympy_parser as sp
from fractions import Fraction
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # the package when it is not pip-installed
from orion_nb import world
from orion_nb.grading import extract_answer
from orion_nb.arith import ExprError, eval_expr
from orion_nb.steps import check_steps, step_consistency
from orion_nb.localise import localise_error

SHARED = ROOT.parent/'shared'/'data'
GSM8K = SHARED/'benchmarks'/'gsm8k'/'test.jsonl'
PALIGN = SHARED/'model_outputs'/'p-align-qwen2.5-7b'
STYLES = [world.TeacherStyle(), world.TeacherStyle(granularity=2, summary='solution'),
          world.TeacherStyle(wait_p=1, verify_p=1, alt_p=1, restate=False),
          world.TeacherStyle(wait_p=0, verify_p=0, alt_p=0, backcheck=False, granularity=2)]


# --- the generated world ----------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_world_teacher_steps_all_hold():
    "Every step of every slip-free teacher trace and short solution is read, and holds."
    recs = world.generate(150, 'train', seed=7) + world.generate(50, 'test', seed=7)
    n = 0
    for i, r in enumerate(recs):
        for style in STYLES:
            cot = world.teacher_cot(r['question'], style, seed=i)
            steps = check_steps(cot)
            assert [s for s in steps if s.holds is not True] == [], cot
            ours = sorted(s.expr for s in steps)
            assert all(e in ours for e, _ in world.check_arithmetic(cot))   # every `a op b = c` the world wrote
            assert localise_error(cot, r['answer'], r['question'])['type'] == 'correct'
            n += len(steps)
        assert all(s.holds for s in check_steps(r['solution']))
        assert step_consistency(r['solution'])['frac_hold'] == 1.0
    assert n > 5000


@pytest.mark.timeout(300)
@pytest.mark.parametrize('slip_p', [0.2, 0.5, 1.0])
def test_world_slips_localised(slip_p):
    "With slips, the wrong answer is localised at the first slipped step: the world's own checker's first failure."
    recs = world.generate(120, 'train', seed=11, levels=[2, 3, 4, 5])
    n_slip = 0
    for i, r in enumerate(recs):
        gran = 1 + i % 2   # granularity 2 after a slip on a decimal problem too (a non-terminating value is a fraction)
        style = world.TeacherStyle(slip_p=slip_p, granularity=gran, summary=('answer', 'solution')[i % 3 == 0])
        cot = world.teacher_cot(r['question'], style, seed=i)
        slips = [e for e, ok in world.check_arithmetic(cot) if not ok]
        loc = localise_error(cot, r['answer'], r['question'])
        if not slips:
            assert extract_answer(cot) == r['answer'] and loc['type'] == 'correct' and loc['step'] is None
            continue
        n_slip += 1
        lhs = slips[0].split(' = ')[0]
        if lhs + ' = ' in cot[cot.index(slips[0]) + len(slips[0]):]:
            continue   # the same left side holds later (e.g. a check step): documented as a correction, not localised
        assert extract_answer(cot) != r['answer']          # a slip (or several) leaves the answer wrong
        assert loc['type'] == 'arithmetic', (loc, cot)
        assert loc['text'] == slips[0]
        assert cot[loc['offset']:loc['offset'] + len(loc['text'])] == loc['text']
        assert cot.index(slips[0]) == loc['offset']                         # the first place it is written
        assert Fraction(loc['expected']) == eval_expr(lhs) != Fraction(loc['written'])
        assert loc['line'] == cot[:loc['offset']].count('\n')
        assert 1 <= loc['n_wrong'] <= len(slips) and loc['corrected'] == []   # the first slip is the one named
        assert 0 < step_consistency(cot)['frac_hold'] < 1
    assert n_slip >= (20 if slip_p < 0.5 else 60)


# --- GSM8K reference solutions ----------------------------------------------------------------------------------

@pytest.mark.timeout(300)
@pytest.mark.skipif(not GSM8K.exists(), reason=f'GSM8K test file absent: {GSM8K} (see ../shared/data/README.md)')
def test_gsm8k_annotations_hold():
    "GSM8K's `<<a*b=c>>` calculator annotations (and the equations written around them) essentially all hold."
    sols = [json.loads(l)['answer'] for l in GSM8K.open() if l.strip()]
    assert len(sols) == 1319
    tot = {k: [0, 0, 0] for k in ('calc', 'text')}
    wrong = []
    for s in sols:
        for st in check_steps(s):
            t = tot[st.kind]; t[0] += 1
            if st.holds is not None: t[1] += 1; t[2] += st.holds
            if st.holds is False and st.kind == 'calc': wrong.append(st.expr)
    for k, (n, checked, hold) in tot.items():
        print(f'GSM8K {k} steps: {n}, checked {checked}, hold {hold} ({hold / checked:.4f})')
    n, checked, hold = tot['calc']
    assert n >= 4200 and checked >= 0.99 * n, tot          # nearly every annotation is read
    assert hold / checked >= 0.98, wrong[:20]
    n, checked, hold = tot['text']
    assert hold / checked >= 0.98, tot                     # the prose equations: few false alarms


# --- real long CoTs -----------------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
@pytest.mark.skipif(not PALIGN.exists(), reason=f'real model outputs absent: {PALIGN}')
def test_real_long_cots():
    "Real long CoTs (median ~17k characters, some cut off in repetition loops) are read without error."
    outs = [(o, r['answer']) for f in sorted(PALIGN.glob('aime2*-output.jsonl'))
            for r in map(json.loads, f.open()) for o in r['output']]
    assert len(outs) == 180
    hold = checked = 0
    types = {}
    for o, gold in outs:
        c = step_consistency(o)
        assert c['n_hold'] + c['n_wrong'] == c['n_checked'] <= c['n_steps']
        hold += c['n_hold']; checked += c['n_checked']
        t = localise_error(o, gold, correct=False)['type']   # the verdict itself is 03_grading's business
        types[t] = types.get(t, 0) + 1
    print(f'P-ALIGN AIME outputs: {hold}/{checked} checked steps hold ({hold / checked:.3f}); types {types}')
    assert checked > 10_000 and 0.5 < hold / checked < 1
    assert set(types) <= {'no_answer', 'arithmetic', 'answer_copy', 'final_answer_mismatch'}


# --- bounds and safety ----------------------------------------------------------------------------------------------

PATHOLOGICAL = ['9^{9^{9^{9}}} = 1', '2**2**2**2**2**2**2 = 4', '(' * 20_000 + '1' + ')' * 20_000 + ' = 1',
                '1' * 100_000 + ' = 1', '1+' * 300_000 + '1 = 2', '= ' * 300_000, '1=' * 300_000,
                '10000! = 1', '99999^{99999} = 1', '\\frac{' * 10_000 + '1' + '}{2}' * 10_000 + ' = 1',
                '<<' + '9**9' * 1000 + '=1>>', '-' * 200_000 + '1 = -1', '1.' + '0' * 100_000 + ' = 1',
                '$' + '{' * 50_000 + '1 = 1']

@pytest.mark.timeout(120)
@pytest.mark.parametrize('text', PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_inputs_are_bounded(text):
    "Huge numbers, deep nesting and megabyte-long runs are rejected or read quickly (a hang trips the timeout)."
    steps = check_steps(text)
    assert len(steps) <= 10_000
    assert all(s.holds is not False for s in steps)
    step_consistency(text); localise_error(text, 1, correct=False)


@pytest.mark.timeout(120)
def test_repetition_loop():
    "A long output stuck repeating a wrong step (as real ones do) is localised in linear time, capped at max_steps."
    loop = '<think>' + '20÷3=6, 20-18=2; ' * 20_000 + '\\boxed{6}' * 5_000
    loc = localise_error(loop, 7, correct=False)
    assert (loc['type'], loc['step'], loc['text'], loc['written']) == ('no_answer', 0, '20÷3=6', '6')
    assert loc['n_steps'] == 10_000 and loc['n_wrong'] == 5_000 and loc['corrected'] == []
    loc = localise_error(loop[7:], 7, correct=False)
    assert (loc['type'], loc['expected']) == ('arithmetic', '20/3')


def test_evaluator_bounds():
    for bad in ['9^{9^{9^{9}}}', '2^{4097}', '(' * 41 + '1' + ')' * 41, '1' * 41, '301!', '1' * 301]:
        with pytest.raises(ExprError): eval_expr(bad)
    assert eval_expr('2^{4000}') == 2 ** 4000
    assert eval_expr('2^{-10}') == Fraction(1, 1024)


EVIL = ["__import__('os').system('echo hi') = 0", "x = __import__('os').system('echo hi') = 1",
        "<<__import__('os').system('echo hi')=0>>", "(lambda: print('hi'))() = 1", "1 = eval(\"print('hi')\")",
        "open('/etc/passwd').read() = 1", "2 + 2 = exec('print(1)')", "\\frac{__import__('os')}{1} = 1",
        "S(1)/3 = 1/3", "Integer(2)**1000 = 1"]

@pytest.mark.parametrize('text', EVIL, ids=range(len(EVIL)))
def test_no_eval(text, monkeypatch, capfd):
    "Code in an equation is just not arithmetic: eval, exec and sympy's string parsers are never called."
    def refuse(*a, **k): raise AssertionError('eval-like call')
    monkeypatch.setattr(builtins, 'eval', refuse); monkeypatch.setattr(builtins, 'exec', refuse)

    monkeypatch.setattr(sympy, 'sympify', refuse); monkeypatch.setattr(sp, 'parse_expr', refuse)
    steps = check_steps(text)
    assert all(s.holds is None or s.lhs_value is not None for s in steps)
    assert not any(s.holds is False for s in steps)
    for side in re.split(r'=', text.strip('<>')):
        if re.search(r'[A-Za-z_]', side):
            with pytest.raises(ExprError): eval_expr(side)
    localise_error(text, '1', correct=False)
    assert 'hi' not in capfd.readouterr().out

def test_bold_results_do_not_crash():
    "A result in markdown bold (common in model outputs) no longer raises IndexError in the side trimming; it is left unchecked."
    from orion_nb.steps import check_steps
    from orion_nb.localise import localise_error
    for t in ('2 + 3 = **5**', 'So 2 + 3 = **6**. \\boxed{6}', '**', '= **', 'x = ** 3'):
        steps = check_steps(t)
        assert all(not s.holds for s in steps if s.why)            # unchecked or checked, never an exception
    assert localise_error('So 2 + 3 = **6**. \\boxed{6}', '5')['type'] == 'final_answer_mismatch'
