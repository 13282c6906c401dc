"""Generation speed on the tiny Qwen2: the transformers backend one prompt at a time vs batched (the same greedy
outputs, asserted), and vLLM where it is installed (in this Python, $ORION_VLLM_PYTHON or .venv-vllm).

    python bench/generation.py [--prompts 64] [--max-new-tokens 64] [--repeats 3] [--threads 1]

Prints one `name: value` per line. Other jobs sharing the CPU move the numbers; the speedup is the stabler one."""
import argparse, json, os, re, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = {'initializer_range': 0.1}   # wider than 0.02, so greedy text is not one repeated token (see nbs/05b_hf)


def prompts(n):
    from orion_nb import models
    return [models.solve_messages(f'What is {i} plus {3 * i}?' + ' Explain.' * (i % 4)) for i in range(n)]


def timed(gen, ps, max_new, repeats=1):
    "Greedy completions of `ps` and the seconds they took: the best of `repeats` runs, after a warm-up call."
    from orion_nb.generate import SamplingParams
    gen.generate(ps[:2], SamplingParams(max_new_tokens=4))
    best = float('inf')
    for _ in range(repeats):
        t = time.perf_counter()
        out = [r[0] for r in gen.generate(ps, SamplingParams(max_new_tokens=max_new))]
        best = min(best, time.perf_counter() - t)
    return out, best


def vllm_only(model_dir, n, max_new, out_json, repeats):
    "Run in a Python that has vLLM: time the vLLM backend, write its texts, print its lines."
    from orion_nb.vllm_engine import VLLMGenerator
    t = time.perf_counter()
    gen = VLLMGenerator(model_dir, dtype='float32', max_model_len=1024, enforce_eager=True)
    load = time.perf_counter() - t
    out, dt = timed(gen, prompts(n), max_new, repeats)
    Path(out_json).write_text(json.dumps([c.text for c in out]))
    print(f'vllm_load_s: {load:.1f}')
    print(f'vllm_tok_s: {sum(c.completion_tokens for c in out) / dt:.1f}')
    gen.close()


def vllm_python():
    "A Python that can `import vllm` (as tests/conftest.py finds it)."
    env = os.environ.get('ORION_VLLM_PYTHON')
    for py in ([env] if env is not None else [sys.executable, str(ROOT/'.venv-vllm'/'bin'/'python')]):
        if py and Path(py).exists() and subprocess.run(
                [py, '-c', "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"]).returncode == 0:
            return py


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--prompts', type=int, default=64)
    ap.add_argument('--max-new-tokens', type=int, default=64)
    ap.add_argument('--repeats', type=int, default=3, help='timed runs per measurement; the fastest counts (other jobs share the CPU)')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (1 avoids contention on a shared CPU)')
    ap.add_argument('--vllm-only', nargs=2, metavar=('MODEL_DIR', 'OUT_JSON'), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.vllm_only: return vllm_only(a.vllm_only[0], a.prompts, a.max_new_tokens, a.vllm_only[1], a.repeats)

    import torch
    from orion_nb import models
    from orion_nb.hf import TransformersGenerator
    torch.set_num_threads(a.threads)
    tok = models.train_tokenizer(); model = models.make_model(tok, SIZES).eval()
    ps = prompts(a.prompts)
    one, t1 = timed(TransformersGenerator(model, tok, batch_size=1), ps, a.max_new_tokens, a.repeats)
    many, tb = timed(TransformersGenerator(model, tok, batch_size=len(ps)), ps, a.max_new_tokens, a.repeats)
    assert [c.text for c in one] == [c.text for c in many], 'batched greedy outputs differ from one-at-a-time ones'
    assert len({c.text for c in one}) > len(ps) // 2, 'degenerate outputs: the equality check would prove nothing'
    ntok = sum(c.completion_tokens for c in one)
    print(f'prompts: {len(ps)}'); print(f'max_new_tokens: {a.max_new_tokens}'); print(f'torch_threads: {a.threads}'); print(f'repeats: {a.repeats}')
    print(f'hf_tokens: {ntok}')
    print(f'hf_tok_s_batch1: {ntok / t1:.1f}')
    print(f'hf_tok_s_batched: {ntok / tb:.1f}')
    print(f'batched_speedup: {t1 / tb:.2f}')

    py = vllm_python()
    if py is None: print('vllm_tok_s: skipped (vLLM not installed)'); return
    with tempfile.TemporaryDirectory() as d:
        models.save_model(model, tok, Path(d)/'model')
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
               'VLLM_CPU_KVCACHE_SPACE': os.environ.get('VLLM_CPU_KVCACHE_SPACE', '1')}
        r = subprocess.run([py, __file__, '--prompts', str(a.prompts), '--max-new-tokens', str(a.max_new_tokens), '--repeats', str(a.repeats),
                            '--vllm-only', str(Path(d)/'model'), str(Path(d)/'vllm.json')],
                           env=env, capture_output=True, text=True)
        if r.returncode: sys.exit(f'vLLM bench failed:\n{r.stderr[-4000:]}')
        print('\n'.join(l for l in r.stdout.splitlines() if re.match(r'vllm_\w+: ', l)))   # not vLLM's logs
        texts = json.loads((Path(d)/'vllm.json').read_text())
        same = sum(x.rstrip('\ufffd') == c.text.rstrip('\ufffd') for x, c in zip(texts, one))
        print(f'vllm_same_greedy: {same}/{len(one)}')


if __name__ == '__main__':
    main()
