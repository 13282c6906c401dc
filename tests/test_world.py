"The generated world: determinism, disjoint splits, answer kinds, teacher traces (boxed, correct, long, arithmetic holds)."
import sys
from fractions import Fraction
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # the package when it is not pip-installed
from orion_nb import world
from orion_nb.data import FIELDS, last_boxed


def test_deterministic_under_seed():
    "The same seed gives the same problems and traces; another seed gives others."
    a, b = world.generate(400, 'train', seed=3), world.generate(400, 'train', seed=3)
    assert a == b
    assert a != world.generate(400, 'train', seed=4)
    assert [world.teacher_cot(r['question'], seed=1) for r in a[:50]] == [world.teacher_cot(r['question'], seed=1) for r in b[:50]]
    assert world.corpus(30, seed=2) == world.corpus(30, seed=2)


def test_records_have_the_data_shape():
    "World problems are 01_data records: the same fields, the gold answer equals the short solution's boxed answer."
    for r in world.generate(200, 'test', seed=0):
        assert tuple(r) == FIELDS
        assert r['source'] == 'world' and r['id'].startswith('world-') and 1 <= r['level'] <= 5
        assert last_boxed(r['solution']) == r['answer']


def test_no_train_test_overlap():
    "No question, id or arithmetic skeleton is in both splits, across seeds; each split is a fixed function of the skeleton."
    train = [r for s in range(3) for r in world.generate(1500, 'train', seed=s)]
    test = [r for s in range(3) for r in world.generate(500, 'test', seed=s)]
    skel = lambda rs: {str(world.canonical(world.parse_question(r['question']))) for r in rs}
    assert not {r['question'] for r in train} & {r['question'] for r in test}
    assert not {r['id'] for r in train} & {r['id'] for r in test}
    assert not skel(train) & skel(test)
    assert {world.split_of(world.parse_question(r['question'])) for r in train} == {'train'}
    assert {world.split_of(world.parse_question(r['question'])) for r in test} == {'test'}
    assert len({r['id'] for r in world.generate(1500, 'train', seed=0)}) == 1500      # distinct within a call


def test_answer_kinds():
    "Integers, reduced fractions and terminating decimals, each as asked, with the subject naming the kind."
    recs = world.generate(600, 'train', seed=5)
    kinds = {k: [r for r in recs if r['subject'] == k] for k in world.KINDS}
    assert all(len(v) > 30 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    for r in kinds['integer']: assert r['answer'].isdigit()
    for r in kinds['fraction']:
        n, d = map(int, r['answer'].split('/'))
        assert d > 1 and Fraction(n, d).denominator == d                         # reduced
    for r in kinds['decimal']:
        assert '.' in r['answer'] and '/' not in r['answer'] and 'dollars' in r['question']
    only = world.generate(50, 'train', seed=1, kind_weights={'fraction': 1})
    assert {r['subject'] for r in only} == {'fraction'}
    for lvl in (1, 3, 5): assert {r['level'] for r in world.generate(40, 'train', seed=2, levels=[lvl])} == {lvl}


@pytest.mark.timeout(300)
def test_teacher_traces():
    "Teacher traces: R1 shape, boxed correct answer after </think>, every step's arithmetic holds, several times longer."
    recs = world.generate(300, 'train', seed=8) + world.generate(100, 'test', seed=8)
    ratios, ratios_eq, waits = [], [], 0
    for i, r in enumerate(recs):
        cot = world.teacher_cot(r['question'], seed=i)
        assert cot.startswith('<think>\n') and cot.count('</think>') == 1
        think, after = cot.split('</think>')
        assert last_boxed(after) == r['answer'] and after.strip().startswith('The answer is')
        eqs = world.check_arithmetic(cot)
        assert eqs and all(ok for _, ok in eqs), cot
        assert all(ok for _, ok in world.check_arithmetic(r['solution']))
        waits += 'Wait,' in think
        ratios.append(len(cot) / len(r['solution']))
        ratios_eq.append(len(cot) / len(world.short_solution(world.parse_question(r['question']), restate=False)))
    assert sum(ratios) / len(ratios) > 2.5 and min(ratios) > 1.8          # k x the short (GSM8K-style) solution
    assert min(ratios_eq) > 3                                              # and more than 3 x the bare equations
    assert waits > len(recs) // 3                                          # "Wait" self-corrections are common


def test_teacher_style_knobs():
    "Verbosity and granularity knobs change the trace as documented; slips are caught by the checker."
    recs = world.generate(100, 'train', seed=9, levels=[3, 4, 5])
    terse = world.TeacherStyle(wait_p=0, verify_p=0, alt_p=0, backcheck=False, restate=False)
    chatty = world.TeacherStyle(wait_p=1, verify_p=1, alt_p=1)
    fine = world.TeacherStyle(granularity=2, wait_p=0, verify_p=0, alt_p=0, backcheck=False, restate=False)
    L = lambda st: sum(len(world.teacher_cot(r['question'], st)) for r in recs)
    assert L(terse) < L(world.TeacherStyle()) < L(chatty)
    n_terse = sum(len(world.check_arithmetic(world.teacher_cot(r['question'], terse))) for r in recs)
    n_fine = sum(len(world.check_arithmetic(world.teacher_cot(r['question'], fine))) for r in recs)
    assert n_fine > n_terse
    assert all('Wait' not in world.teacher_cot(r['question'], terse) for r in recs)
    wrong = 0
    for i, r in enumerate(recs):
        cot = world.teacher_cot(r['question'], world.TeacherStyle(slip_p=1.0, granularity=1 + i % 2), seed=i)
        bad = [e for e, ok in world.check_arithmetic(cot) if not ok]
        assert len(bad) == 1, cot
        wrong += last_boxed(cot) != r['answer']
    assert wrong == len(recs)


def test_parse_round_trip_and_rejects_foreign_text():
    "The teacher reads questions back exactly; text the world did not write is refused."
    for r in world.generate(300, 'train', seed=12):
        spec = world.parse_question(r['question'])
        assert world.render_question(spec) == r['question'] and world.to_record(spec) == r
    with pytest.raises(ValueError, match='not a world question'):
        world.teacher_cot('Natalia sold clips to 48 of her friends in April. How many clips did she sell?')
