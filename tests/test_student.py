"The base student: built with small settings, cached and reloaded, reproducible; keyed by its recipe and mix, not its code; its instruction mix holds out the reflection task; the shipped student keeps its hash, mix and gates."
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # the package when it is not pip-installed
from orion_nb import world
from orion_nb.models import load_model, load_tokenizer, n_params
from orion_nb.student import (StudentRecipe, build_student, student_info, student_path, load_student, solve_accuracy,
                              student_conversations)

TOY = dict(n_problems=300, steps=40, batch_size=8, tokenizer_problems=100, eval_n=10, pretrain_steps=5, pretrain_replay=0.1,
           sizes=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))


def test_small_student_is_cached_and_reloads(tmp_path):
    "A small build writes a complete folder; the second call returns it without training; load_model(path) works."
    t0 = time.time(); p = build_student(tmp_path, progress=False, **TOY); first = time.time() - t0
    info = student_info(p)
    assert p == student_path(tmp_path, StudentRecipe(**TOY)) and p.name == f"student-{info['key']}"
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'student.json'} <= {f.name for f in p.iterdir()}
    assert len(info['losses']) == 40 and info['losses'][-1] < info['losses'][0]
    assert set(info['eval']) == {'train', 'test'} and info['eval']['test']['seen_in_training'] == 0
    mtime = (p/'student.json').stat().st_mtime
    t0 = time.time(); assert build_student(tmp_path, progress=False, **TOY) == p; again = time.time() - t0
    assert again < 1 < first or again < first / 5
    assert (p/'student.json').stat().st_mtime == mtime
    model, tok = load_model(p), load_tokenizer(p)
    assert n_params(model) == info['parameters'] and tok.eos_token == '<|im_end|>'
    m2, t2 = load_student(tmp_path, **TOY)
    assert n_params(m2) == n_params(model)
    assert [x.name for x in tmp_path.iterdir()] == [p.name]                    # no temporary folder left
    assert build_student(tmp_path, progress=False, **{**TOY, 'seed': 1}) != p   # another recipe, another folder


def test_student_is_reproducible(tmp_path):
    "The same recipe built twice (in two cache folders) gives the same weights and losses, copy pretraining's and its replay's included."
    import torch
    a, b = build_student(tmp_path/'a', progress=False, **TOY), build_student(tmp_path/'b', progress=False, **TOY)
    assert student_info(a)['losses'] == student_info(b)['losses'] and len(student_info(a)['pretrain_losses']) == 5
    assert student_info(a)['pretrain_losses'] == student_info(b)['pretrain_losses']
    assert student_info(a)['replayed'] == round(0.1 * student_info(a)['examples']) > 0
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _scratch_key(tmp_path, edit: dict) -> dict:
    "The key of a small recipe and `code_hash(['student'])` from a scratch copy of the package with `edit` (file -> (old, new)) applied."
    from orion_nb.core import package_dir
    pkg = tmp_path/'orion_nb'; shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(package_dir(), pkg, ignore=shutil.ignore_patterns('__pycache__'))
    for f, (old, new) in edit.items():
        src = (pkg/f).read_text(); assert src.count(old) == 1, (f, old); (pkg/f).write_text(src.replace(old, new))
    code = ("import json, orion_nb, orion_nb.student as s; from orion_nb.core import code_hash; "
            "print(json.dumps(dict(file=orion_nb.__file__, key=s.StudentRecipe(n_problems=60).key(), code=code_hash(['student']))))")
    out = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': str(tmp_path)}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.splitlines()[-1]); assert r['file'] == str(pkg/'__init__.py'); return r


def test_key_is_the_recipe_and_its_mix_not_the_code(tmp_path):
    """A behaviour-preserving code edit (a variable renamed in world.py, a comment in student.py) changes the code's hash
    but keeps the student's key; an edit that changes the mix, or a recipe field, changes it."""
    from orion_nb.core import code_hash
    key = StudentRecipe(n_problems=60).key()
    same = _scratch_key(tmp_path, {'world.py': ('    out = _records(draw, n, split, test_frac, set(exclude))\n    if len(out) < n:',
                                                '    recs = _records(draw, n, split, test_frac, set(exclude))\n    out = recs\n    if len(out) < n:'),
                                   'student.py': ('STUDENT_SEED_OFFSET = 10_000\n', 'STUDENT_SEED_OFFSET = 10_000   # a comment\n')})
    assert same['code'] != code_hash(['student']) and same['key'] == key
    assert _scratch_key(tmp_path, {'student.py': ('STUDENT_SEED_OFFSET = 10_000\n', 'STUDENT_SEED_OFFSET = 10_001\n')})['key'] != key
    assert len({key} | {StudentRecipe(n_problems=60, **o).key() for o in ({'seed': 1}, {'lr': 1.0}, {'steps': 1}, {'version': 3})}) == 5


def test_shipped_student_mix():
    """The shipped student.json records its mix: the first `mix_slice_n` chats its recipe generates now hash to its
    `mix_slice_sha256`, and its key is its recipe with its `mix_sha256` (StudentRecipe.key); its files still match their hash."""
    from dataclasses import asdict
    from orion_nb.core import stable_hash
    from orion_nb.student import SHIPPED, mix_hash, verify_student
    info = verify_student(ROOT / SHIPPED, 'report')
    r = StudentRecipe(**info['recipe'])
    assert mix_hash(r, info['mix_slice_n']) == info['mix_slice_sha256'] and info['mix_slice_n'] >= 1000
    assert info['key'] == stable_hash([asdict(r), info['mix_sha256']])


def test_training_data_is_world_only():
    """Every task of the instruction mix is in the student's data; every solution a solve, rewrite or correct target
    writes is the world's own short solution of its question (never as a section of a rewrite's prompt: a rewrite is not a copy), and every critique names a step of it (a critique task's
    after checking the steps before it: each checked equation holds)."""
    from orion_nb.instruct import instruct_mix, TASKS
    probs = world.generate(600, 'train', seed=11)
    mix = instruct_mix(probs, seed=0)
    assert {e['task'] for e in mix} == set(TASKS)
    for e, r in zip(mix, probs):
        t = e['messages'][1]['content']
        if e['task'] in ('solve', 'rewrite', 'correct'): assert t.split('\n\n')[-1] == r['solution']
        if e['task'] == 'rewrite':   # a rewrite is not a copy: its target is never a section (only a teacher trace's closing summary)
            p = e['messages'][0]['content']
            assert not any(re.search(r'(:|\]|^### .*)$', p[:m.start()].rstrip('\n').split('\n')[-1]) for m in re.finditer(re.escape(r['solution']), p))
        if e['task'] == 'correct': assert re.match(r'The first wrong step is step (\d+)', t)
        if e['task'] == 'critique':
            *checks, last, verdict = t.split('\n')
            assert re.match(rf'The first wrong step is step {len(checks) + 1}: ', verdict) and last.startswith(f'{len(checks) + 1}) ')
            assert all(ok for c in checks for _, ok in world.check_arithmetic(c)) and all(c.endswith(' ok') for c in checks)


def test_held_out_reflection_task_is_not_in_the_mix():
    """The pipeline's reflection prompt, its no-error (reference) prompt and the critique probe's wording never appear in the student's mix: not
    their instructions, not the attempt's header; and no prompt holds a wrong solution of its question together with
    a right one (the three-part task), since texts about other problems never come from the question itself."""
    from orion_nb.reflection import REFLECT_PROMPT, NO_ERROR_PROMPT, instruction
    from orion_nb.instruct import instruct_mix
    probs = world.generate(3000, 'train', seed=4321)
    mix = instruct_mix(probs, seed=3)
    prompts = [e['messages'][0]['content'] for e in mix]
    from orion_nb.gates import PROBE_CRITIQUE
    held = [instruction(REFLECT_PROMPT), instruction(NO_ERROR_PROMPT), 'Your earlier attempt (wrong):', PROBE_CRITIQUE.split('\n')[0]]
    assert not [p for p in prompts for h in held if h in p]
    for e, r in zip(mix, probs):
        if e['task'] in ('critique', 'correct'):   # a wrong solution of the question is in the prompt: no right one may be
            assert f"\\boxed{{{r['answer']}}}" not in e['messages'][0]['content'] and r['solution'] not in e['messages'][0]['content']


@pytest.mark.timeout(1800)
def test_shipped_student_hash_and_gates():
    """The shipped student (models/orion-tiny-instruct) matches the hash in its student.json, and its gates, measured
    again here on the same held-out probes, land where its build put them: same values (within 0.03), same verdicts.
    It is refused under student_gates 'require' exactly when a gate failed at build time."""
    from orion_nb.gates import measure_gates
    from orion_nb.student import SHIPPED, verify_student
    path = ROOT / SHIPPED
    info = verify_student(path, 'report')
    stored = info['gates']
    again = measure_gates(path, **stored['probes'])
    print('\nshipped student gates, at build -> now:', {k: (g['value'], again['gates'][k]['value']) for k, g in stored['gates'].items()})
    for k, g in stored['gates'].items():
        assert abs(again['gates'][k]['value'] - g['value']) <= 0.03, k
        assert again['gates'][k]['passed'] == g['passed'], k
    if stored['passed']: assert verify_student(path)['sha256'] == info['sha256']
    else:
        with pytest.raises(ValueError, match='failed its capability gates'): verify_student(path)
