"""A GPU check before a long real run: the pipeline's own SFT path and vLLM generation on a Qwen2.5-1.5B-shaped model
with random weights and Qwen's real vocabulary (151,936 rows: 1.54 B parameters; nothing downloaded).

Prints one `name: value` per line:
  device, params                     the GPU, and the model's parameter count
  sft_seq_len, sft_examples          longest example in tokens (the others spread down to half of it), examples trained
  sft_batch_size                     examples per step, padded to the longest of each batch (the run's path: sdpa attention)
  sft_tokens_per_s                   trained (unpadded) tokens per second of `orion_nb.sft.train_sft` with the run's settings
                                     (--params: batch size, lr, max length, precision, gradient checkpointing), after a warm-up
  sft_mfu                            model FLOPs utilisation: `train_flops` (6 x params per token + causal attention) / --peak-tflops
  peak_memory_gib                    largest GPU memory held during training
  gpu_memory_held_gib                what this process still holds once training is freed, before vLLM starts
  vllm_tokens_per_s                  generated tokens per second of `VLLMGenerator` (--prompts x --new-tokens) at the run's
                                     vllm_max_model_len and vllm_gpu_memory_utilization, if vLLM is installed
Without a GPU it prints `skipped: no GPU` and exits 0.
Usage: python bench/gpu.py [--params params/qwen2.5-1.5b-r1-traces.yaml] [--seq-len 8192,16384] [--examples 8]
       [--batch-size 4] [--tokenizer .cache/tokenizers/qwen3] [--peak-tflops 989] [--prompts 256] [--new-tokens 1024]
"""
import argparse, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QWEN15B = dict(model_type='qwen2', hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
               num_key_value_heads=2, max_position_embeddings=32768, vocab_size=151936, tie_word_embeddings=True)   # Qwen2.5-1.5B's config

def train_flops(n_params: int, layers: int, hidden: int, lengths) -> float:
    "Model FLOPs of a forward and backward pass over sequences of `lengths` tokens: 6 per weight per token, plus causal attention."
    # attention: QK^T and the weighted sum of V, 2 x 2d FLOPs per (query, key) pair, s^2/2 pairs when causal, x 3 forward + backward
    return sum(6 * n_params * s + 6 * layers * hidden * s * s for s in lengths)

def run_settings(path) -> dict:
    "The SFT and vLLM settings of a parameter file (the pipeline's defaults where it has none); the batch is one GPU's micro-batch (`sft_per_device_batch_size`)."
    import yaml
    p = yaml.safe_load(Path(path).read_text())
    sft = dict(epochs=1, warmup=0.0, batch_size=p.get('sft_per_device_batch_size') or p.get('sft_batch_size', 16), lr=p.get('sft_lr', 1e-3), max_length=p.get('sft_max_length', 1024),
               precision=p.get('sft_precision', 'auto'), gradient_checkpointing=p.get('sft_gradient_checkpointing', 'auto'),
               attn_implementation=p.get('sft_attn_implementation', 'sdpa'), on_overlength=p.get('sft_on_overlength', 'error'))
    return dict(sft=sft, vllm=dict(max_model_len=p.get('vllm_max_model_len') or 4096, gpu_memory_utilization=p.get('vllm_gpu_memory_utilization', 0.9)))

def tokenizer(path=None):
    "Qwen's tokenizer from `path` (e.g. .cache/tokenizers/qwen3) when given, else the project's small one (its ids are a subset of the model's rows)."
    from orion_nb.models import train_tokenizer
    small = train_tokenizer()
    if not path: return small
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.chat_template = tok.chat_template or small.chat_template
    return tok

def model_dir(root: Path, tok) -> tuple[Path, int]:
    "A Qwen2.5-1.5B-shaped model with random weights and Qwen's 151,936-row vocabulary, stored in bf16 as the real one is; its parameter count."
    import torch
    from transformers import Qwen2ForCausalLM
    from orion_nb.models import model_config, save_model
    shape = {k: v for k, v in QWEN15B.items() if k not in ('model_type', 'vocab_size', 'tie_word_embeddings')}
    with torch.device('cuda'): m = Qwen2ForCausalLM(model_config(tok, shape, vocab_size=QWEN15B['vocab_size'])).to(torch.bfloat16)
    n = sum(p.numel() for p in m.parameters()); path = save_model(m, tok, root/'qwen15b-random')
    del m; free_gpu()
    return path, n

def varied_examples(tok, n: int, seq_len: int) -> list[dict]:
    "`n` prompt–completion examples whose lengths spread evenly from half of `seq_len` to `seq_len` tokens, so batches are padded."
    from orion_nb.models import solve_messages
    from orion_nb.recipes import example
    ids = tok(' '.join(f'step {i}: add {i} and {i + 1}.' for i in range(seq_len)))['input_ids']
    lens = [seq_len // 2 + (seq_len // 2) * i // max(n - 1, 1) for i in range(n)]
    return [example(f'q{i}', solve_messages(f'What is {i} + {i}?'), tok.decode(ids[:L - 96]) + f' \\boxed{{{2 * i}}}') for i, L in enumerate(lens)]

def free_gpu() -> float:
    "Hand the memory this process cached back to the GPU (so vLLM's engine gets its share); GiB still held."
    import gc, torch
    gc.collect(); torch.cuda.empty_cache()
    return round(torch.cuda.memory_reserved() / 2**30, 2)

def sft_figures(path: Path, tok, n_params: int, seq_len: int, n: int, sft: dict, peak_tflops: float, out: Path) -> dict:
    "Train on `n` examples up to `seq_len` tokens through the pipeline's SFT code with the run's settings; tokens/s, MFU and peak memory."
    import torch
    from orion_nb.sft import train_sft, example_length
    exs = varied_examples(tok, n, seq_len)
    train_sft(path, exs[-sft['batch_size']:], out/f'warm{seq_len}', sft)   # warm-up on the longest batch: kernels, allocator
    free_gpu(); torch.cuda.reset_peak_memory_stats()
    s = train_sft(path, exs, out/f'sft{seq_len}', sft)
    lens = [example_length(tok, ex) for ex in exs if ex['id'] not in s['dropped']]
    flops = train_flops(n_params, QWEN15B['num_hidden_layers'], QWEN15B['hidden_size'], lens)
    return dict(sft_batch_size=sft['batch_size'], sft_tokens_per_s=round(sum(lens) / s['seconds'], 1),
                sft_mfu=round(flops / s['seconds'] / (peak_tflops * 1e12), 4), peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))

def vllm_figures(path: Path, prompts: int, new_tokens: int, engine: dict) -> dict:
    "Generation throughput of the pipeline's vLLM backend at the run's engine settings (random weights never stop early: every answer is full length)."
    from orion_nb.generate import SamplingParams
    from orion_nb.vllm_engine import VLLMGenerator
    with VLLMGenerator(str(path), **engine) as g:
        g.generate([f'Question {i}: what is {i} + {i}?' for i in range(8)], SamplingParams(max_new_tokens=16))   # warm-up
        t0 = time.time()
        outs = g.generate([f'Question {i}: what is {i} + {i}?' for i in range(prompts)], SamplingParams(max_new_tokens=new_tokens, temperature=1.0))
        n = sum(c.completion_tokens for cs in outs for c in cs)
    return dict(vllm_tokens_per_s=round(n / (time.time() - t0), 1))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--params', default=str(ROOT/'params'/'qwen2.5-1.5b-r1-traces.yaml'), help="the run whose SFT and vLLM settings are measured")
    ap.add_argument('--seq-len', default='8192,16384'); ap.add_argument('--examples', type=int, default=8)
    ap.add_argument('--batch-size', type=int, default=None, help='examples per device per step (default: the run\'s sft_batch_size)')
    ap.add_argument('--tokenizer', default=None, help="a folder with Qwen's tokenizer (default: the project's small one)")
    ap.add_argument('--peak-tflops', type=float, default=989.0, help='dense bf16 peak of the GPU (H100/H200 SXM: 989)')
    ap.add_argument('--prompts', type=int, default=256); ap.add_argument('--new-tokens', type=int, default=1024)
    a = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available(): print('skipped: no GPU'); return 0
    run = run_settings(a.params); sft = {**run['sft'], **({'batch_size': a.batch_size} if a.batch_size else {})}
    tok = tokenizer(a.tokenizer)
    with tempfile.TemporaryDirectory() as d:
        path, n_params = model_dir(Path(d), tok)
        print(f'device: {torch.cuda.get_device_name()}'); print(f'params: {n_params}')
        for L in map(int, a.seq_len.split(',')):
            print(f'sft_seq_len: {L}'); print(f'sft_examples: {a.examples}')
            for k, v in sft_figures(path, tok, n_params, L, a.examples, {**sft, 'max_length': max(sft['max_length'], L)}, a.peak_tflops, Path(d)).items(): print(f'{k}: {v}')
        print(f'gpu_memory_held_gib: {free_gpu()}')
        try:
            import vllm  # noqa: F401
        except ImportError: print('vllm_tokens_per_s: skipped (vLLM not installed)'); return 0
        for k, v in vllm_figures(path, a.prompts, a.new_tokens, run['vllm']).items(): print(f'{k}: {v}')
    return 0

if __name__ == '__main__': sys.exit(main())
