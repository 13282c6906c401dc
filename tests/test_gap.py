"The tiny world's skill gap (issue 25, params/tiny-gap.yaml): the run's questions lie outside the shipped student's mix, the gate probes outside the test split, and a world inside the mix is refused by the headroom gate."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from orion_nb import world
from orion_nb.gates import probe_problems
from orion_nb.params import load_params
from orion_nb.student import StudentRecipe, student_problems

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = json.loads((ROOT/'models'/'orion-tiny-instruct'/'student.json').read_text())
TINY = dict(load_params(ROOT/'params'/'tiny-gap.yaml'))   # the world with a skill gap

def skeletons(recs): return {str(world.canonical(world.parse_question(r['question']))) for r in recs}

def run_questions(p=TINY):
    "The tiny run's training, validation and test questions, as 00_data draws them."
    kw = dict(seed=p['world_seed'], levels=p['world_levels'])
    return dict(train=world.generate(p['train_n'], 'train', **kw), val=world.generate(p['world_val_n'], 'val', **kw),
                test=world.generate(p['world_test_n'], 'test', **kw))

def test_run_questions_outside_the_students_mix():
    "By the gap's defining property (levels) and by skeleton: no question of the run is in the 112k-problem mix."
    mix_levels, qs = set(SHIPPED['recipe']['levels']), run_questions()
    assert not {r['level'] for rs in qs.values() for r in rs} & mix_levels
    mix = skeletons(student_problems(StudentRecipe(**{k: v for k, v in SHIPPED['recipe'].items()})))
    assert all(not skeletons(rs) & mix for rs in qs.values())

def test_run_splits_and_gate_probes_are_disjoint():
    "Train, validation and test share no skeleton, and the gate probes (at the run's levels) none with any of them."
    qs = run_questions()
    qs['probe'] = probe_problems(SHIPPED['gates']['probes']['n'], SHIPPED['gates']['probes']['seed'], TINY['world_levels'])
    sk = {k: skeletons(v) for k, v in qs.items()}
    assert [(a, b) for a in sk for b in sk if a < b and sk[a] & sk[b]] == []

def test_shipped_gates_measured_where_orion_works():
    "The student's stored gates were measured on probes at the tiny run's levels; those at build (levels 1-5) are kept apart."
    assert SHIPPED['gates']['probes']['levels'] == TINY['world_levels']
    assert SHIPPED['gates_at_build']['probes'].get('levels', [1, 2, 3, 4, 5]) == SHIPPED['recipe']['levels']

@pytest.mark.timeout(1500)
def test_headroom_gate_refuses_a_world_inside_the_mix(tmp_path):
    "At levels 1-5 (the mix's own distribution, tiny.yaml) fine-tuning on reference solutions does not help: under require the run is refused before stage 2."
    (tmp_path/'p.yaml').write_text(f"base: {ROOT/'params'/'tiny.yaml'}\nrun_name: inside\nheadroom_gate: require\n"   # tiny.yaml: the mix's own levels
                                   "stages: [00_data, 01_student, 01b_headroom]\nheadroom_seeds: [0, 1]\n")
    r = subprocess.run([str(Path(sys.executable).parent/'orion'), 'run', str(tmp_path/'p.yaml'), '--runs', str(tmp_path/'runs'),
                        '--reports', str(tmp_path/'reports')], cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode != 0 and 'headroom gate failed' in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    v = json.loads((tmp_path/'runs'/'inside'/'01b_headroom'/'headroom.json').read_text())
    assert not v['passed'] and v['gain'] < v['min_gain']
