"""A GPU check before a long real run: the pipeline's own SFT path and vLLM generation on a Qwen2.5-1.5B-shaped model
with random weights (nothing downloaded; the tokenizer is the project's local one).

Prints one `name: value` per line:
  device, params                     the GPU, and the model's parameter count
  sft_seq_len, sft_examples          tokens per training example, examples trained
  sft_tokens_per_s                   trained tokens per second of `orion_nb.sft.train_sft` (bf16 autocast, fp32 master
                                     weights, gradient checkpointing, batch 1), after a warm-up run
  sft_mfu                            model FLOPs utilisation: 6 x params x tokens/s (+ attention) / --peak-tflops
  peak_memory_gib                    largest GPU memory held during training
  vllm_tokens_per_s                  generated tokens per second of `VLLMGenerator` (--prompts x --new-tokens), if vLLM is installed
Without a GPU it prints `skipped: no GPU` and exits 0.
Usage: python bench/gpu.py [--seq-len 8192,16384] [--examples 4] [--peak-tflops 989] [--prompts 256] [--new-tokens 1024]
"""
import argparse, sys, tempfile, time
from pathlib import Path

QWEN15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
               max_position_embeddings=32768)

def model_dir(root: Path, tok) -> Path:
    "A Qwen2.5-1.5B-shaped model with random weights, stored in bf16 as the real one is."
    import torch
    from orion_nb.models import make_model, save_model
    m = make_model(tok, QWEN15B).to(torch.bfloat16)
    m.config.tie_word_embeddings = True
    return save_model(m, tok, root/'qwen15b-random')

def long_examples(tok, n: int, seq_len: int) -> list[dict]:
    "`n` prompt–completion examples of about `seq_len` tokens each."
    from orion_nb.models import solve_messages
    from orion_nb.recipes import example
    words = ' '.join(f'step {i}: add {i} and {i + 1}.' for i in range(seq_len))
    ids = tok(words)['input_ids'][:seq_len - 64]
    return [example(f'q{i}', solve_messages(f'What is {i} + {i}?'), tok.decode(ids) + f' \\boxed{{{2 * i}}}') for i in range(n)]

def sft_figures(path: Path, tok, n_params: int, seq_len: int, n: int, peak_tflops: float, out: Path) -> dict:
    "Train on `n` examples of `seq_len` tokens through the pipeline's SFT code; tokens/s, MFU and peak memory."
    import torch
    from orion_nb.sft import train_sft
    params = dict(epochs=1, batch_size=1, lr=1e-5, max_length=seq_len + 64, precision='bf16', warmup=0.0,
                  gradient_checkpointing='on')
    exs = long_examples(tok, n, seq_len)
    train_sft(path, exs[:1], out/f'warm{seq_len}', params)              # warm-up: kernels, allocator
    torch.cuda.reset_peak_memory_stats()
    s = train_sft(path, exs, out/f'sft{seq_len}', params)
    tps = s['audit']['tokens'] / s['seconds']
    cfg = QWEN15B
    flops_per_token = 6 * n_params + 12 * cfg['num_hidden_layers'] * cfg['hidden_size'] * seq_len   # weights + attention (causal: x 1/2, x 2 fwd+bwd)
    return dict(sft_tokens_per_s=round(tps, 1), sft_mfu=round(flops_per_token * tps / (peak_tflops * 1e12), 4),
                peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))

def vllm_figures(path: Path, prompts: int, new_tokens: int) -> dict:
    "Generation throughput of the pipeline's vLLM backend (random weights never stop early: every answer is full length)."
    from orion_nb.generate import VLLMGenerator, SamplingParams
    with VLLMGenerator(str(path), max_model_len=4096, gpu_memory_utilization=0.5) as g:
        g.generate([f'Question {i}: what is {i} + {i}?' for i in range(8)], SamplingParams(max_new_tokens=16))   # warm-up
        t0 = time.time()
        outs = g.generate([f'Question {i}: what is {i} + {i}?' for i in range(prompts)], SamplingParams(max_new_tokens=new_tokens, temperature=1.0))
        n = sum(c.completion_tokens for cs in outs for c in cs)
    return dict(vllm_tokens_per_s=round(n / (time.time() - t0), 1))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seq-len', default='8192,16384'); ap.add_argument('--examples', type=int, default=4)
    ap.add_argument('--peak-tflops', type=float, default=989.0, help='dense bf16 peak of the GPU (H100/H200 SXM: 989)')
    ap.add_argument('--prompts', type=int, default=256); ap.add_argument('--new-tokens', type=int, default=1024)
    a = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available(): print('skipped: no GPU'); return 0
    from orion_nb.models import train_tokenizer, load_model
    tok = train_tokenizer()
    with tempfile.TemporaryDirectory() as d:
        path = model_dir(Path(d), tok)
        n_params = sum(p.numel() for p in load_model(path).parameters())
        print(f'device: {torch.cuda.get_device_name()}'); print(f'params: {n_params}')
        for L in map(int, a.seq_len.split(',')):
            print(f'sft_seq_len: {L}'); print(f'sft_examples: {a.examples}')
            for k, v in sft_figures(path, tok, n_params, L, a.examples, a.peak_tflops, Path(d)).items(): print(f'{k}: {v}')
        try:
            import vllm  # noqa: F401
            for k, v in vllm_figures(path, a.prompts, a.new_tokens).items(): print(f'{k}: {v}')
        except ImportError: print('vllm_tokens_per_s: skipped (vLLM not installed)')
    return 0

if __name__ == '__main__': sys.exit(main())
