"Any world seed runs: every scripted writer of the world, on 50 world seeds, several sizes and levels up to 8, never crashes (issue #29)."
import random, re
from types import SimpleNamespace
import pytest
from orion_nb import world, instruct, baselines as B, teacher as T, gates, student
from orion_nb.world import TeacherStyle
from orion_nb.reflection import reflection_prompt

SEEDS = range(50)
STYLES = [None, TeacherStyle(slip_p=0.3), TeacherStyle(granularity=2, summary='solution', slip_p=0.2, wait_p=0.6, restate=False)]

LEVELS = [(1, 2, 3, 4, 5), (6, 7), (7, 8)]   # the student's mix's levels, the tiny preset's, and longer still

def sizes(seed: int) -> tuple[int, int]:
    "(train, test) questions for a seed: 100 to 300 train, 40 to 120 test."
    return 100 + 40 * (seed % 6), 40 + 16 * (seed % 6)

def garbled(text: str, rng: random.Random) -> str:
    "`text` with one equation's result replaced by a value a decimal answer cannot write (a third, or 7 decimals): a student's slip."
    ms = list(re.finditer(r'= (\d+)(?![\d./])', text))
    if not ms: return text
    m = rng.choice(ms); n = int(m[1])
    v = rng.choice([f'{3 * n + 1}/3', f'{n}.{rng.randrange(1, 10**7):07d}', f'{n + 1}/7'])
    return text[:m.start()] + f'= {v}' + text[m.end():]

class Echo:
    "A stand-in student for the gate probes: the same short answer to every prompt."
    def generate(self, prompts, params):
        return [[SimpleNamespace(text='The first wrong step is step 1: 2 + 3 = 6. The answer is \\boxed{6}', finish_reason='stop')] for _ in prompts]

@pytest.mark.parametrize('seed', SEEDS)
def test_scripted_writers_any_seed(seed):
    "Stages 00-02 and 04b (scripted), the instruct mix with its perturbations and the gate probes on world seed `seed`: no exception."
    n_train, n_test = sizes(seed)
    lv = LEVELS[seed % len(LEVELS)]
    train, test = world.generate(n_train, 'train', seed=seed, levels=lv), world.generate(n_test, 'test', seed=seed, levels=lv)   # 00_data
    assert not {r['question'] for r in train} & {r['question'] for r in test}
    recs = T.scripted_teacher(train, k=1, workers=1)                                                        # 02_teacher: long CoTs
    for i, r in enumerate(train): world.teacher_cot(r['question'], STYLES[i % len(STYLES)], seed=i)        # the teacher's other styles
    recs = B.scripted_short_teacher(recs, k=4, workers=1)                                                   # the short teacher, as stage 2 runs it
    rng = random.Random(f'attempts-{seed}')                                                                  # 04b: wrong attempts a student might write
    for r in recs:
        texts = [t['text'] for t in r['short']['traces'] if not t['correct']] + [B.scripted_short(r['question'], 9, slip=0.5)]
        if w := instruct.wrong_solution(world.parse_question(r['question']), rng): texts.append(w['text'])
        texts.append(garbled(rng.choice(texts), rng))
        r['exposure'] = dict(attempts=[dict(sample=j, text=t, correct=False) for j, t in enumerate(texts)])
    fixed = B.scripted_corrections(recs, attempts=4, workers=1)
    assert B.correction_summary(fixed)['corrections'] > 0
    instruct.instruct_mix(train, seed=seed)                                                                  # the instruct mix and its perturbations
    world.corpus(n_test, seed)                                                                               # a world-tiny student's tokenizer texts
    student.student_conversations(student.StudentRecipe(seed=seed, n_problems=n_test), test)               # a world-tiny student's chats
    probes = gates.probe_problems(n_test, seed, lv)                                                          # the gate probes
    gates._critique_gate(Echo(), probes, seed)
    for r in probes: reflection_prompt(r['question'], world.teacher_cot(r['question']), B.scripted_short(r['question'], 0, 0.5))
