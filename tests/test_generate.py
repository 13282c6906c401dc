"Resumable generation with the transformers backend: kill -9 mid-run, resume, nothing lost or duplicated."
import json, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import pytest
from conftest import gen_env

from orion_nb.core import JsonlStore
from orion_nb.generate import SamplingParams, generate_resumable
from orion_nb.hf import TransformersGenerator

PARAMS = dict(temperature=1.0, top_p=0.9, n=2, max_new_tokens=48, seed=11)

RUN = """
import sys, json
from orion_nb.generate import SamplingParams, generate_resumable
from orion_nb.hf import TransformersGenerator
model_dir, store, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
prompts = [[{'role': 'user', 'content': f'What is {i} plus {i * 7}?'}] for i in range(24)]
gen = TransformersGenerator(model_dir, model_id='tiny', batch_size=2)
generate_resumable(gen, prompts, SamplingParams(**params), store, progress=False)
"""

def prompts(): return [[{'role': 'user', 'content': f'What is {i} plus {i * 7}?'}] for i in range(24)]

def lines(p): return p.read_text().count('\n') if p.exists() else 0


@pytest.mark.timeout(600)
def test_kill9_resume(gen_tiny_dir, tmp_path):
    "A run killed with SIGKILL resumes: every sample stored exactly once, and the same as an uninterrupted run's."
    store, script = tmp_path/'gen.jsonl', tmp_path/'run.py'
    script.write_text(RUN)
    args = [sys.executable, str(script), str(gen_tiny_dir/'base'), str(store), json.dumps(PARAMS)]
    proc = subprocess.Popen(args, env=gen_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0 = time.time()
        while lines(store) < 6 and proc.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
        assert proc.poll() is None, 'the run ended before it could be killed: ' + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = lines(store)
    assert 6 <= done < 48
    with open(store, 'a') as f: f.write('{"key": "torn')        # what a kill during a write leaves behind
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = subprocess.run(args, env=gen_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(l) for l in store.read_text().splitlines()]
    assert len(recs) == 48 and len({r['key'] for r in recs}) == 48
    # the resumed samples are the ones an uninterrupted run makes (seeds are per sample, not per batch)
    gen = TransformersGenerator(gen_tiny_dir/'base', model_id='tiny', batch_size=8)
    ref = generate_resumable(gen, prompts(), SamplingParams(**PARAMS), tmp_path/'ref.jsonl', progress=False)
    assert {r['key']: r['text'] for rs in ref for r in rs} == {r['key']: r['text'] for r in recs}
    # finished: a third run computes nothing
    gen.model = None
    again = generate_resumable(gen, prompts(), SamplingParams(**PARAMS), store, progress=False)
    assert [r['key'] for rs in again for r in rs] == [r['key'] for rs in ref for r in rs]


def test_model_from_path_with_lora(gen_tiny_dir):
    "A model and a LoRA adapter given as paths; model_id names both."
    base = TransformersGenerator(gen_tiny_dir/'base')
    lora = TransformersGenerator(gen_tiny_dir/'base', lora=gen_tiny_dir/'lora')
    assert base.model_id == str(gen_tiny_dir/'base')
    assert lora.model_id == f"{gen_tiny_dir/'base'}+lora:{gen_tiny_dir/'lora'}"
    p = SamplingParams(max_new_tokens=16)
    assert base.generate(prompts()[:4], p) != lora.generate(prompts()[:4], p)


def test_progress_bar(gen_tiny_dir, tmp_path, capsys):
    "Long runs show a tqdm bar counting samples (resumed ones included)."
    gen = TransformersGenerator(gen_tiny_dir/'base', model_id='tiny')
    generate_resumable(gen, prompts()[:3], SamplingParams(max_new_tokens=4, n=2), tmp_path/'g.jsonl')
    err = capsys.readouterr().err
    assert 'generate tiny' in err and '6/6' in err
