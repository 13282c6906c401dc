"The papermill pipeline end to end on a small world with an untrained stand-in student: reports, caching, determinism, no key leak."
import json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'/'data'
KEY = 'sk-orion-test-4f8e2c91d7a3b6e0'

PARAMS = """run_name: small
data_dir: {data}
train_n: 6
world_test_n: 6
benchmarks: {benchmarks}
benchmark_n: 3
student: {student}
reflect_students: [base, sft_teacher]
exposure_k: 2
reflect_m: 1
student_max_new_tokens: 40
gen_shards: 2
sft_launcher: forkserver
seeds: [0]
sft_epochs: 1.0
sft_batch_size: 4
eval_max_new_tokens: 40
nll_examples: 3
"""

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from orion_nb.models import train_tokenizer, make_model, save_model
    d = tmp_path_factory.mktemp('pipe')
    tok = train_tokenizer(vocab_size=600)
    save_model(make_model(tok, dict(initializer_range=0.1)), tok, d/'student')
    bench = '[amc23]' if SHARED.is_dir() else '[]'
    (d/'p.yaml').write_text(PARAMS.format(data=SHARED, benchmarks=bench, student=d/'student'))
    return d

def orion(d, runs, reports, params='p.yaml', **env):
    t = time.time()
    r = subprocess.run([str(Path(sys.executable).parent/'orion'), 'run', str(d/params), '--runs', str(runs), '--reports', str(reports)],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1', **env})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r.stdout + r.stderr, time.time() - t

@pytest.fixture(scope='module')
def first_run(setup):
    out, secs = orion(setup, setup/'runs', setup/'reports', OPENAI_API_KEY=KEY)
    return setup, out, secs

STAGES = ['00_data', '01_student', '01b_headroom', '02_teacher', '03_exposure', '04_reflection', '04b_corrections', '05_recipes', '06_train', '07_evaluate', '08_summary']

@pytest.mark.timeout(1200)
def test_reports_and_manifest(first_run):
    d, out, _ = first_run
    idx = (d/'reports'/'small'/'index.html').read_text()
    for s in STAGES:
        assert f"href='{s}.html'" in idx and (d/'reports'/'small'/f'{s}.html').is_file()
    assert 'Accuracy (%' in idx and "src='08_summary__accuracy.png'" in idx and 'Training stability' in idx
    m = json.loads((d/'runs'/'small'/'manifest.json').read_text())
    assert [m['stages'][s]['status'] for s in STAGES] == ['done'] * len(STAGES)
    assert all(m['stages'][s]['seconds'] > 0 for s in STAGES) and m['seeds']['seeds'] == [0] and m['seeds']['eval_seed'] == 0 and m['params_hash']
    assert all(m['stages'][s]['commit'][:12] in idx for s in STAGES) and 'run at commit' in idx   # each stage's commit
    recipes = json.loads((d/'runs'/'small'/'05_recipes'/'recipes.json').read_text())
    assert 'orion@sft_teacher' in recipes and 'orion_no_reflect' in recipes and 'rft' in recipes
    lema = [json.loads(l) for l in (d/'runs'/'small'/'05_recipes'/'lema.jsonl').read_text().splitlines()]
    assert len(lema) == len({e['id'].split('#')[0] for e in lema}) and {e['source'] for e in lema} <= {'correction_teacher', 'teacher_cot'}
    fixed = [json.loads(l) for l in (d/'runs'/'small'/'04b_corrections'/'records.jsonl').read_text().splitlines()]
    assert any(r['correction']['kept'] for r in fixed)                 # the teacher corrected the untrained student's attempts
    assert all(r['short']['k'] == 4 for r in fixed)                    # the short teacher's CoTs, carried through the stages
    from datasets import load_from_disk                                # every training set: a Dataset with its card
    assert len(load_from_disk(str(d/'runs'/'small'/'05_recipes'/'orion_at_sft_teacher'))) == len(
        (d/'runs'/'small'/'05_recipes'/'orion_at_sft_teacher.jsonl').read_text().splitlines())
    assert 'lema_per_question' in (d/'runs'/'small'/'05_recipes'/'lema'/'README.md').read_text()
    rec = json.loads((d/'runs'/'small'/'04_reflection'/'base.jsonl').read_text().splitlines()[0])
    assert {'teacher', 'exposure', 'reflection', 'target'} <= set(rec) and rec['target']['why']
    res = [json.loads(l) for l in (d/'runs'/'small'/'07_evaluate'/'results.jsonl').read_text().splitlines()]
    outs = [json.loads(l) for l in (d/'runs'/'small'/'07_evaluate'/'outputs'/'orion_seed0__world_test.jsonl').read_text().splitlines()]
    r = next(x for x in res if (x['recipe'], x['seed'], x['set']) == ('orion', 0, 'world_test'))
    assert r['cut_off'] == sum(o['finish_reason'] == 'length' for o in outs) / len(outs)   # budget hits, per model and set
    assert 'cut off at the token budget' in idx and "Where ORION's training targets come from" in idx
    assert 'over TCP without encryption' not in out            # stage kernels talk over IPC
    facts = json.loads((d/'reports'/'small'/'manifest.json').read_text())   # the report carries its manifest and figures
    assert facts['params_hash'] == m['params_hash'] and facts['stages']['06_train']['notebook'] == 'notebooks/06_train.ipynb'
    summary = json.loads((d/'reports'/'small'/'summary.json').read_text())
    assert {'accuracy', 'claims', 'refinement_acceptance', 'target_origins', 'stability', 'target_coherence'} <= set(summary)
    assert set(summary['accuracy']['world_test']) == {'base', *recipes} and 'base' in summary['refinement_acceptance']

@pytest.mark.timeout(1200)
def test_other_world_seed(setup):
    "Any world seed runs (issue #29): world seed 15, whose 6 questions crashed the scripted short teacher in stage 2, end to end."
    (setup/'seed15.yaml').write_text((setup/'p.yaml').read_text() + 'world_seed: 15\n')
    orion(setup, setup/'runs_seed15', setup/'reports_seed15', params='seed15.yaml')
    m = json.loads((setup/'runs_seed15'/'small'/'manifest.json').read_text())
    assert [m['stages'][s]['status'] for s in STAGES] == ['done'] * len(STAGES)
    recs = [json.loads(l) for l in (setup/'runs_seed15'/'small'/'02_teacher'/'records.jsonl').read_text().splitlines()]
    assert any(t.get('as_fraction') for r in recs for t in r['short']['traces'])   # the slip that crashed it, written as a fraction
    assert 'short_as_fraction' in (setup/'reports_seed15'/'small'/'02_teacher.html').read_text()   # and counted in the stage's table

@pytest.mark.timeout(1200)
def test_unchanged_rerun_is_cached(first_run):
    d, _, cold = first_run
    (d/'reports'/'small'/'02_teacher.html').unlink()             # a deleted report is rendered again, the stage not redone
    out, warm = orion(d, d/'runs', d/'reports')
    assert out.count('unchanged, not redone') == len(STAGES) and (d/'reports'/'small'/'02_teacher.html').is_file()
    assert warm < cold / 3

@pytest.mark.timeout(1200)
def test_same_parameters_same_metrics(first_run):
    d, _, _ = first_run
    orion(d, d/'runs2', d/'reports2')
    read = lambda p: [json.loads(l) for l in p.read_text().splitlines()]
    a, b = read(d/'runs'/'small'/'07_evaluate'/'results.jsonl'), read(d/'runs2'/'small'/'07_evaluate'/'results.jsonl')
    assert a == b
    la = (d/'runs'/'small'/'06_train'/'orion'/'seed0'/'trainer_log.jsonl').read_text().splitlines()
    lb = (d/'runs2'/'small'/'06_train'/'orion'/'seed0'/'trainer_log.jsonl').read_text().splitlines()
    strip = lambda ls: [{k: v for k, v in json.loads(l).items() if k != 'time'} for l in ls]
    assert strip(la) == strip(lb)

@pytest.mark.timeout(1200)
def test_serial_and_parallel_schedules_same_metrics(first_run):
    "Generations, trainings and evaluations one at a time give what they give side by side (the first run: 'auto' workers, 1 thread each)."
    import yaml
    d, _, _ = first_run
    p = yaml.safe_load((d/'p.yaml').read_text())
    (d/'serial.yaml').write_text(yaml.safe_dump({**p, 'train_workers': 1, 'eval_workers': 1, 'gen_workers': 1}))
    r = subprocess.run([str(Path(sys.executable).parent/'orion'), 'run', str(d/'serial.yaml'), '--runs', str(d/'runs_serial'), '--reports', str(d/'reports_serial')],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert all('1 at once' in (d/'runs_serial'/'small'/'notebooks'/f'{s}.ipynb').read_text() for s in ('03_exposure', '04_reflection', '06_train'))
    read = lambda p: [json.loads(l) for l in p.read_text().splitlines()]
    for f in ['03_exposure/base.jsonl', '03_exposure/sft_teacher.jsonl', '04_reflection/base.jsonl', '04_reflection/no_error.jsonl']:
        serial = (d/'runs_serial'/'small'/f).read_text().replace('runs_serial/small', 'runs/small')   # sft_teacher's path
        assert (d/'runs'/'small'/f).read_text() == serial, f   # the attempts and refinements, in two shares each
    assert (d/'runs'/'small'/'03_exposure'/'base_generations.1of2.jsonl').is_file()
    assert read(d/'runs'/'small'/'07_evaluate'/'results.jsonl') == read(d/'runs_serial'/'small'/'07_evaluate'/'results.jsonl')
    strip = lambda p: [{k: v for k, v in r.items() if k != 'time'} for r in read(p)]
    for m in json.loads((d/'runs'/'small'/'06_train'/'models.json').read_text()):
        f = Path('06_train')/m['recipe'].replace('@', '_at_')/f"seed{m['seed']}"/'trainer_log.jsonl'
        assert strip(d/'runs'/'small'/f) == strip(d/'runs_serial'/'small'/f), f

@pytest.mark.timeout(1200)
def test_api_key_written_nowhere(first_run):
    d, out, _ = first_run
    hits = [str(p) for base in (d/'runs', d/'reports') for p in base.rglob('*') if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not hits and KEY not in out

CHROMIUM = next((c for c in ('/usr/bin/chromium', '/usr/bin/chromium-browser') if Path(c).exists()), None)

@pytest.mark.skipif(CHROMIUM is None, reason='Debian chromium not installed (apt-get install chromium)')
@pytest.mark.timeout(300)
def test_index_renders_in_chromium(first_run, tmp_path):
    "Headless Chromium loads index.html: the tables are there and every figure decodes to a real image."
    d, _, _ = first_run
    rep = d/'reports'/'small'
    probe = rep/'_probe.html'
    probe.write_text((rep/'index.html').read_text().replace('</body>', """<script>window.addEventListener('load', () => {
      const imgs = [...document.images]; document.title = 'PROBE ' + imgs.length + ' ' + imgs.filter(i => i.complete && i.naturalWidth > 100).length
        + ' ' + document.querySelectorAll('table').length; });</script></body>"""))
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', f'--user-data-dir={tmp_path/"profile"}', '--virtual-time-budget=5000']
    try:
        dom = subprocess.run([CHROMIUM, *flags, '--dump-dom', probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
        shot = subprocess.run([CHROMIUM, *flags, '--window-size=1200,2000', f'--screenshot={tmp_path/"index.png"}', (rep/'index.html').as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally: probe.unlink()
    import re
    n_img, n_ok, n_tables = map(int, re.search(r'<title>PROBE (\d+) (\d+) (\d+)</title>', dom).groups())
    assert n_img >= 2 and n_ok == n_img and n_tables >= 8
    assert "id='stages'" in dom.replace('"', "'") and 'Accuracy (%' in dom
    assert 'Journey: ' in dom and dom.count('<details>') >= 1 and '<summary>Question 1 (gold' in dom   # the journey page, closed
    png = (tmp_path/'index.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 50_000

# --- Results are never stale: every cache keyed by content -------------------------------------------------------
def rerun(d, name, hide_original=False, **params):
    "Copy the first run, change `params` in its parameter file, run the copy again; its run folder and output."
    import shutil, yaml
    shutil.copytree(d/'runs', d/f'runs_{name}'); shutil.copytree(d/'reports', d/f'reports_{name}')
    p = yaml.safe_load((d/'p.yaml').read_text()); p.update(params)
    (d/f'{name}.yaml').write_text(yaml.safe_dump(p))
    if hide_original: (d/'runs').rename(d/'runs_hidden')              # the copy must not read anything of the original
    try:
        r = subprocess.run([str(Path(sys.executable).parent/'orion'), 'run', str(d/f'{name}.yaml'), '--runs', str(d/f'runs_{name}'),
                            '--reports', str(d/f'reports_{name}')], cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    finally:
        if hide_original: (d/'runs_hidden').rename(d/'runs')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return d/f'runs_{name}'/'small', r.stdout

def redone(out): return [s for s in STAGES if f'{s}: running' in out]
def lines(p): return len(p.read_text().splitlines())

def snapshot(run):
    "Weights hash of every trained model (and sft_teacher) and the size of every generation store of the run."
    from orion_nb.core import content_hash
    models = {m['recipe']: content_hash(run/'06_train'/m['recipe'].replace('@', '_at_')/f"seed{m['seed']}"/'model')
              for m in json.loads((run/'06_train'/'models.json').read_text())}
    models['sft_teacher'] = content_hash(run/'03_exposure'/'sft_teacher'/'model')
    stores = {str(p.relative_to(run)): lines(p) for p in run.rglob('*generations*.jsonl')}
    stores.update({str(p.relative_to(run)): lines(p) for p in (run/'07_evaluate'/'generations').glob('*.jsonl')})
    return models, stores

@pytest.mark.timeout(1200)
def test_changed_lr_retrains_and_reevaluates_exactly_the_affected_models(first_run):
    "sft_lr changed: every trained model (and sft_teacher) is retrained and re-evaluated; the base student's work is reused."
    d, _, _ = first_run
    models0, stores0 = snapshot(d/'runs'/'small')
    run, out = rerun(d, 'lr', sft_lr=5.0e-3)
    assert redone(out) == STAGES[2:]                               # the stages declaring sft_lr (01b_headroom first), and those after them
    models1, stores1 = snapshot(run)
    assert all(models1[m] != models0[m] for m in models0), 'a model was not retrained'
    assert all(json.loads((run/'06_train'/m.replace('@', '_at_')/'seed0'/'sft_summary.json').read_text())['params']['lr'] == 5e-3
               for m in models0 if m != 'sft_teacher')
    base = [k for k in stores0 if k.startswith(('03_exposure/base', '04_reflection/base', '04_reflection/no_error', '07_evaluate/generations/base_seed0'))]
    assert base and all(stores1[k] == stores0[k] for k in base)    # the base student's samples: reused, none generated
    trained = [k for k in stores0 if k.startswith('07_evaluate') and 'base_seed0' not in k]
    assert trained and all(stores1[k] > stores0[k] for k in trained)   # every retrained model: answered anew

@pytest.mark.timeout(1200)
def test_changed_long_share_retrains_only_mix_long(first_run):
    "long_share only changes Mix-Long's data: only that model is retrained and re-evaluated."
    d, _, _ = first_run
    models0, stores0 = snapshot(d/'runs'/'small')
    run, out = rerun(d, 'mix', long_share=0.5)
    assert redone(out) == STAGES[7:]
    cached = {m['recipe']: m['cached'] for m in json.loads((run/'06_train'/'models.json').read_text())}
    assert [r for r, c in cached.items() if not c] == ['mix_long']
    models1, stores1 = snapshot(run)
    assert [m for m in models0 if models1[m] != models0[m]] == ['mix_long']
    assert [k for k in stores0 if stores1[k] != stores0[k]] == [k for k in stores0 if 'mix_long_seed0__' in k]

@pytest.mark.timeout(1200)
def test_changed_prompt_redoes_its_stage_and_later(first_run):
    """A prompt template is a parameter: changing it redoes its stage and those after it, nothing before, and is used.
    The run is a copy in another folder, with the original out of reach: nothing of a run is found by its old path."""
    from orion_nb.reflection import REFLECT_PROMPT
    d, _, _ = first_run
    new = REFLECT_PROMPT.replace('Solve the following math problem.', 'Solve this math problem carefully.')
    run, out = rerun(d, 'prompt', hide_original=True, reflect_prompt=new)
    assert redone(out) == STAGES[5:]
    rec = json.loads((run/'04_reflection'/'base.jsonl').read_text().splitlines()[0])
    assert all(p['prompt'].startswith('Solve this math problem carefully.') for p in rec['reflection']['prompts'])

def test_library_edit_redoes_importing_stages_only(tmp_path):
    "Editing a prompt constant in a scratch copy of the library changes the keys of its stage and later ones, none before."
    import shutil
    from orion_nb.core import package_dir
    from orion_nb.runner import declared_parameters, pipeline_notebooks, stage_keys
    pkg = tmp_path/'orion_nb'; shutil.copytree(package_dir(), pkg, ignore=shutil.ignore_patterns('__pycache__'))
    nbs = pipeline_notebooks(ROOT/'nbs'/'pipeline'); decl = {nb: declared_parameters(nb) for nb in nbs}
    keys = lambda: [k for _, k in stage_keys(nbs, decl, {}, tmp_path/'run', pkg).values()]
    before = keys()
    src = (pkg/'reflection.py').read_text(); assert 'REFLECT_PROMPT = (' in src
    (pkg/'reflection.py').write_text(src.replace('Solve the following math problem. A reference', 'Solve this math problem. A reference'))
    after = keys()
    assert [a != b for a, b in zip(before, after)] == [s >= '04' for s in STAGES]
    assert keys() == after                                          # unchanged: the same keys


@pytest.mark.timeout(1200)
def test_judge_scores_answers_through_a_local_server(first_run):
    "The optional LLM judge: only the summary is redone; every model's answers are judged by the server; the prompt is in the report."
    from test_server import StandIn
    d, _, _ = first_run
    srv = StandIn()
    try:
        run, out = rerun(d, 'judge', judge='openai', judge_model='stand-in', judge_base_url=srv.url, judge_n=2,
                         judge_prompt='Judge the coherence 1-10.\n{question}\n---\n{solution}')
    finally: srv.stop()
    assert redone(out) == ['08_summary']
    assert any(t.startswith('Judge the coherence 1-10.') for t, _ in srv.hits)   # the stage's own prompt reached the server
    summary = json.loads((run/'08_summary'/'summary.json').read_text())
    scores = summary['judge']['scores']                                # set -> recipe -> mean score: every model on every set
    assert {s: set(rs) for s, rs in scores.items()} == {s: set(rs) for s, rs in summary['accuracy'].items()}
    assert all(v == 8 for rs in scores.values() for v in rs.values()) and summary['judge']['unparsed'] == 0
    page = (d/'reports_judge'/'small'/'index.html').read_text()
    assert 'LLM judge' in page and 'Judge the coherence 1-10.' in page
