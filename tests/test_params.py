"Parameter files for real models: they resolve, their data loads from the given paths, and a few questions run on a tiny stand-in."
from pathlib import Path
import pytest
from orion_nb.cli import main
from orion_nb.runner import pipeline_notebooks, declared_parameters
from orion_nb.params import load_params, param_errors
from orion_nb.data import load_benchmark, load_train_pool

ROOT = Path(__file__).resolve().parents[1]
TINY = [p for p in sorted((ROOT/'params').glob('*.yaml')) if load_params(p)['train_pool'] == 'world']
REAL = [p for p in sorted((ROOT/'params').glob('*.yaml')) if p not in TINY]
SHARED = ROOT.parent/'shared'/'data'

@pytest.fixture(scope='module')
def stand_in(tmp_path_factory):
    from orion_nb.models import train_tokenizer, make_model, save_model
    tok = train_tokenizer(vocab_size=600)
    return save_model(make_model(tok, dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1)), tok, tmp_path_factory.mktemp('m')/'tiny')

def test_real_params_exist():
    "Real presets are every file whose training pool is not the generated world; tiny.yaml and tiny-gap.yaml are the tiny ones."
    assert {p.name for p in TINY} >= {'tiny.yaml', 'tiny-gap.yaml'}
    assert len(REAL) >= 2 and any(load_params(p).get('gen_backend') == 'vllm' for p in REAL)

@pytest.mark.parametrize('path', REAL, ids=lambda p: p.name)
def test_real_params_resolve(path):
    decl = {k: v for nb in pipeline_notebooks(ROOT/'nbs'/'pipeline') for k, v in declared_parameters(nb).items()}
    p = load_params(path)
    errs = param_errors(p, decl, str(path), base=ROOT)   # the only problem allowed: a traces file the user brings
    assert all("parameter 'teacher_traces_path': no file at" in e for e in errs), errs
    assert bool(errs) == bool(p.get('teacher_traces_path'))
    if p.get('sft_accelerate_config'): assert (ROOT/p['sft_accelerate_config']).is_file()

@pytest.mark.skipif(not SHARED.is_dir(), reason=f'benchmark files not found at {SHARED}')
@pytest.mark.parametrize('path', REAL, ids=lambda p: p.name)
def test_real_params_data_and_stand_in(path, stand_in, tmp_path):
    "The data the file names loads from its data_dir, and two questions per benchmark run through the tiny stand-in."
    from orion_nb.generate import SamplingParams
    from orion_nb.hf import TransformersGenerator
    from orion_nb.evaluate import evaluate
    p = load_params(path)
    data_dir = ROOT/p['data_dir']
    assert len(load_train_pool(p['train_pool'], data_dir, on_invalid='skip')) > 1000
    gen = TransformersGenerator(stand_in)
    for b in p['benchmarks']:
        outs = evaluate(gen, list(load_benchmark(b, data_dir))[:2], SamplingParams(max_new_tokens=8), tmp_path/f'{b}.jsonl', progress=False)
        assert len(outs) == 2 and all(o['correct'] is False for o in outs)

def test_mistyped_name_stops(tmp_path, capsys):
    bad = tmp_path/'bad.yaml'
    bad.write_text((ROOT/'params'/'tiny.yaml').read_text() + 'exposure_temprature: 0.8\n')
    assert main(['check', str(bad), '--notebooks', str(ROOT/'nbs'/'pipeline')]) == 2
    assert "unknown parameter 'exposure_temprature' (did you mean 'exposure_temperature'?)" in capsys.readouterr().err

@pytest.mark.parametrize('cmd', [['check', 'params/tiny.yaml'], ['run', 'params/tiny.yaml', '--dry-run', '--runs', '{tmp}/runs']])
def test_quick_commands_import_no_heavy_library(cmd, tmp_path):
    "`orion check` and `orion run --dry-run` answer without torch, transformers, PEFT, papermill or nbformat (seconds to import)."
    import subprocess, sys
    code = ("import sys; from orion_nb.cli import main; code = main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'papermill', 'nbformat', 'datasets') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(code)")
    r = subprocess.run([sys.executable, '-c', code, *[c.format(tmp=tmp_path) for c in cmd]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'HEAVY []' in r.stdout, r.stdout

HOSTILE = {
    'billion laughs': ("run_name: t\n" + "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
                       + ''.join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip('abcdefgh', 'bcdefghi'))
                       + "seeds: *i\n", 'YAML aliases'),
    'run name escapes': ('run_name: ../../elsewhere\n', "parameter 'run_name': '../../elsewhere' is not a plain name"),
    'empty run name': ('run_name: ""\n', "parameter 'run_name': '' is not a plain name"),
    'infinite float': ('sft_lr: .inf\n', "parameter 'sft_lr': inf is not a finite number"),
    'nan float': ('exposure_temperature: .nan\n', "parameter 'exposure_temperature': nan is not a finite number"),
    'huge size': ('train_n: 1000000000000\n', "parameter 'train_n': 1000000000000 out of range; must be 1..1000000"),
}

@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_parameter_files_are_refused_at_once(name, tmp_path, capsys):
    "Hostile or absurd values stop `orion check` in well under a second, with a short message naming the file, line and parameter."
    import time
    text, msg = HOSTILE[name]
    f = tmp_path/'h.yaml'; f.write_text(text)
    t = time.time(); code = main(['check', str(f)]); secs = time.time() - t
    err = capsys.readouterr().err
    assert code == 2 and msg in err and f'{f}:' in err, err[:2000]
    assert secs < 5 and len(err) < 2000, (secs, len(err))

def test_parameter_file_size_is_bounded(tmp_path, capsys):
    f = tmp_path/'big.yaml'; f.write_text('run_name: t\n' + '# padding\n' * 200_000)
    assert main(['check', str(f)]) == 2
    assert 'larger than' in capsys.readouterr().err

QWEN15 = dict(model_type='qwen2', hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
              vocab_size=151936, tie_word_embeddings=True, torch_dtype='bfloat16', max_position_embeddings=32768)   # Qwen2.5-1.5B-Instruct's config.json
QWEN3_17 = dict(model_type='qwen3', hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                head_dim=128, vocab_size=151936, tie_word_embeddings=True, torch_dtype='bfloat16', max_position_embeddings=40960)   # Qwen3-1.7B's
QWEN32 = dict(model_type='qwen2', hidden_size=5120, intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40, num_key_value_heads=8,
              vocab_size=152064, tie_word_embeddings=False, torch_dtype='bfloat16', max_position_embeddings=32768)  # Qwen2.5-32B-Instruct's

def hub_cache(root, configs: dict) -> Path:
    "A Hugging Face cache under `root` holding each Hub id's `config.json`, laid out as a download leaves it."
    import json
    for repo, c in configs.items():
        d = root/f"models--{repo.replace('/', '--')}"; (d/'refs').mkdir(parents=True); (d/'refs'/'main').write_text('abc')
        (d/'snapshots'/'abc').mkdir(parents=True); (d/'snapshots'/'abc'/'config.json').write_text(json.dumps(c))
    return root

@pytest.mark.parametrize('path', REAL, ids=lambda p: p.name)
def test_real_params_gpu_fit(path, tmp_path):
    "With the models' configs at hand: the 1.5B student fits one 80 GiB GPU; the 32B short teacher and corrector at 32k tokens fit 0.95 of one, not 0.9."
    decl = {k: v for nb in pipeline_notebooks(ROOT/'nbs'/'pipeline') for k, v in declared_parameters(nb).items()}
    hub = hub_cache(tmp_path/'hub', {'Qwen/Qwen2.5-1.5B-Instruct': QWEN15, 'Qwen/Qwen2.5-32B-Instruct': QWEN32, 'Qwen/Qwen3-1.7B': QWEN3_17})
    p, notes = load_params(path), []
    if p.get('teacher_traces_path'): (tmp_path/'t.jsonl').write_text(''); p['teacher_traces_path'] = str(tmp_path/'t.jsonl')
    errs = param_errors(p, decl, str(path), base=ROOT, notes=notes, cache_dir=hub)
    assert notes[0].startswith(f"student ({p['student']}): fits: " + ('2.9 GiB weights + 0.9 GiB KV cache of one 32,768-token sequence' if '2.5' in p['student'] else '')), notes
    assert errs == [], errs   # the traces file's 32B short teacher and corrector fit at its 0.95 of one GPU ...
    if p.get('short_teacher') != 'vllm': assert len(notes) == 1; return
    errs = param_errors({**p, 'vllm_gpu_memory_utilization': 0.9}, decl, str(path), base=ROOT, cache_dir=hub)   # ... and not at 0.9
    assert [e.split(': ')[1] for e in errs] == ["parameter 'short_model'", "parameter 'correction_model'"], errs
    assert all('61.0 GiB weights + 8.0 GiB KV cache of one 32,768-token sequence + 4.0 GiB overhead = 73.0 GiB per GPU' in e
               and 'available 0.9 x 80.0 GiB = 72.0 GiB; lower vllm_max_model_len' in e for e in errs), errs

def test_check_says_when_the_gpu_estimate_is_skipped(tmp_path):
    "`orion check` prints each vLLM model's estimate (configs from $HF_HUB_CACHE), or that it was skipped and why; neither fails."
    import os, subprocess, sys
    cmd = [sys.executable, '-c', 'import sys; from orion_nb.cli import main; sys.exit(main())', 'check', 'params/qwen2.5-1.5b-r1-api.yaml']
    for hub, said in [(tmp_path/'empty', 'GPU memory estimate skipped: no config.json in the Hugging Face cache'),
                      (hub_cache(tmp_path/'hub', {'Qwen/Qwen2.5-1.5B-Instruct': QWEN15}), 'fits: 2.9 GiB weights')]:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, 'HF_HUB_CACHE': str(hub)})
        assert r.returncode == 0 and f'params/qwen2.5-1.5b-r1-api.yaml: student (Qwen/Qwen2.5-1.5B-Instruct): {said}' in r.stdout, r.stdout + r.stderr

def test_vllm_data_parallel_auto(tmp_path):
    "vllm_data_parallel_size may be 'auto' (the real parameter files' choice) or an integer; anything else is refused by name."
    decl = {k: v for nb in pipeline_notebooks(ROOT/'nbs'/'pipeline') for k, v in declared_parameters(nb).items()}
    assert all(load_params(p)['vllm_data_parallel_size'] == 'auto' for p in REAL if 'qwen2.5-1.5b-r1' in p.name)
    assert param_errors({'vllm_data_parallel_size': 'auto'}, decl, 'p.yaml', base=ROOT) == []
    assert param_errors({'vllm_data_parallel_size': 2}, decl, 'p.yaml', base=ROOT) == []
    errs = param_errors({'vllm_data_parallel_size': 'all'}, decl, 'p.yaml', base=ROOT)
    assert len(errs) == 1 and "parameter 'vllm_data_parallel_size': expected 'auto' or an integer, got str ('all')" in errs[0], errs
