"Stages 1-4 and the recipes end to end on the generated world, with a real (tiny, untrained) transformers student."
import json
from pathlib import Path
import pytest
from orion_nb import world
from orion_nb.models import train_tokenizer, make_model, save_model
from orion_nb.generate import SamplingParams
from orion_nb.hf import TransformersGenerator
from orion_nb.teacher import scripted_teacher, generator_teacher, teacher_summary
from orion_nb.exposure import expose_errors, exposure_summary
from orion_nb.reflection import reflect, reflection_summary
from orion_nb.filter import select_targets, filter_summary
from orion_nb.recipes import RECIPES, write_recipes
from orion_nb.baselines import correction_summary, scripted_corrections, scripted_short_teacher
from orion_nb.sft import load_examples

@pytest.fixture(scope='module')
def student(tmp_path_factory):
    tok = train_tokenizer(vocab_size=600)
    d = tmp_path_factory.mktemp('stages')
    return TransformersGenerator(save_model(make_model(tok, dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1)), tok, d/'student'))

@pytest.mark.timeout(900)
def test_pipeline_records(tmp_path, student):
    probs = world.generate(6, 'train', seed=3)
    t = scripted_short_teacher(scripted_teacher(probs, k=2, out_path=tmp_path/'teacher.jsonl'), k=2, workers=1)
    assert teacher_summary(t)['kept'] == 12 and all(len(r['short']['traces']) == 2 for r in t)
    params = SamplingParams(temperature=1.0, n=2, max_new_tokens=24, seed=0)
    e = expose_errors(t, student, params, tmp_path/'exposure_store.jsonl', tmp_path/'exposure.jsonl', progress=False)
    s = exposure_summary(e)
    assert s['attempts'] == 12 and s['questions_with_errors'] == 6             # an untrained student gets all wrong
    wrong = [a for r in e for a in r['exposure']['attempts'] if not a['correct']]
    assert all(a['error']['type'] in ('no_answer', 'arithmetic', 'answer_copy', 'final_answer_mismatch') for a in wrong)
    r = reflect(e, student, SamplingParams(temperature=1.0, n=2, max_new_tokens=24), tmp_path/'refl_store.jsonl', progress=False)
    assert reflection_summary(r)['refinements'] == 12
    r = select_targets(r, out_path=tmp_path/'reflection.jsonl')
    rs = filter_summary(r)
    assert rs['refinements'] == 12 and rs['survived'] == 0 and rs['targets'] == {'teacher': 6}
    assert sum(rs['rejected_because'].values()) >= 12
    one = r[0]
    assert one['reflection']['prompts'][0]['prompt'].endswith(one['exposure']['attempts'][one['exposure']['wrong'][0]]['text'])
    assert one['target']['why'].startswith('no refinement survived')
    # the store makes the stage resumable: a rerun generates nothing new
    n_lines = len((tmp_path/'refl_store.jsonl').read_text().splitlines())
    reflect(e, student, SamplingParams(temperature=1.0, n=2, max_new_tokens=24), tmp_path/'refl_store.jsonl', progress=False)
    assert len((tmp_path/'refl_store.jsonl').read_text().splitlines()) == n_lines
    no_err = select_targets(reflect(e, student, SamplingParams(temperature=1.0, n=1, max_new_tokens=24), tmp_path/'noerr_store.jsonl',
                                    with_error=False, progress=False))
    assert all('earlier attempt' not in x['reflection']['prompts'][0]['prompt'] for x in no_err)
    r = scripted_corrections(r, workers=1)                                     # LEMA: the teacher corrects each first wrong attempt
    assert correction_summary(r)['kept'] == 6
    stats = write_recipes(r, tmp_path/'recipes', no_error_recs=no_err, tokenizer=student.tokenizer)
    assert stats['lema']['sources'] == {'correction_teacher': 6} and stats['rft']['sources'] == {'teacher_cot': 6}
    assert set(stats) == set(RECIPES) and {v['questions'] for v in stats.values()} == {6}
    assert stats['long_cot']['response_tokens'] > stats['short_cot']['response_tokens']
    for n in RECIPES: assert len(load_examples(tmp_path/'recipes'/f'{n}.jsonl')) == stats[n]['examples']
    rec = json.loads((tmp_path/'reflection.jsonl').read_text().splitlines()[0])
    assert {'teacher', 'exposure', 'reflection', 'target'} <= set(rec)          # one provenance record per question

def test_generator_teacher_rejects_wrong(tmp_path, student):
    probs = world.generate(3, 'train', seed=4)
    recs = generator_teacher(probs, student, SamplingParams(temperature=1.0, n=2, max_new_tokens=16), tmp_path/'t.jsonl', progress=False)
    assert [len(r['teacher']['traces']) for r in recs] == [2, 2, 2]
    assert all(not t['correct'] for r in recs for t in r['teacher']['traces']) and teacher_summary(recs)['questions_without_cot'] == 3
    assert all(t['model'] == student.model_id for r in recs for t in r['teacher']['traces'])

def test_generator_short_teacher_and_corrector(tmp_path, student):
    "The short teacher and LEMA's corrector on a generation backend: every sample stored and graded; nothing wrong kept."
    from orion_nb.baselines import correction_summary, generator_corrections, generator_short_teacher
    from orion_nb.records import kept_shorts
    probs = world.generate(3, 'train', seed=5)
    s = generator_short_teacher(probs, student, SamplingParams(temperature=1.0, n=2, max_new_tokens=16), tmp_path/'s.jsonl', progress=False)
    assert [len(r['short']['traces']) for r in s] == [2, 2, 2] and all(kept_shorts(r) == [] for r in s)   # an untrained model: all wrong
    assert all(t['model'] == student.model_id and t['finish_reason'] for r in s for t in r['short']['traces'])
    recs = [{**r, 'exposure': dict(attempts=[dict(sample=0, text='1 + 1 = 3 \\boxed{3}', correct=False)])} for r in s]
    c = generator_corrections(recs, student, SamplingParams(temperature=1.0, n=2, max_new_tokens=16), tmp_path/'c.jsonl', progress=False)
    sm = correction_summary(c)
    assert (sm['attempts_corrected'], sm['corrections'], sm['kept']) == (3, 6, 0)
    assert len((tmp_path/'c.jsonl').read_text().splitlines()) == 6

def test_documentation_edit_in_generate_redoes_nothing(tmp_path):
    "A docstring or comment edit in generate.py keeps every code key (stages', generation stores' through `hf`); a code edit changes them."
    import shutil
    from orion_nb.core import code_hash, package_dir
    pkg = tmp_path/'orion_nb'; shutil.copytree(package_dir(), pkg, ignore=shutil.ignore_patterns('__pycache__'))
    before = {m: code_hash([m], pkg) for m in ('generate', 'hf')}
    src = (pkg/'generate.py').read_text()
    doc = '"How to sample; every backend reads these fields the same way."'
    assert doc in src
    (pkg/'generate.py').write_text(src.replace(doc, '"What decides the samples."').replace('\n', '  # a comment\n', 1))
    assert {m: code_hash([m], pkg) for m in before} == before
    (pkg/'generate.py').write_text(src.replace('def greedy(', 'def greedy_(', 1))
    assert all(code_hash([m], pkg) != h for m, h in before.items())
