"bench/gpu.py's arithmetic and inputs, checked without a GPU."
import importlib.util, subprocess, sys
from pathlib import Path
import pytest
from orion_nb.params import param_count

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('bench_gpu', ROOT/'bench'/'gpu.py'); gpu = importlib.util.module_from_spec(spec); spec.loader.exec_module(gpu)

def test_train_flops_counts_causal_attention():
    "6 per weight per token, plus 6 x layers x hidden x s per token for causal attention forward and backward (half of 12 L d s)."
    assert gpu.train_flops(10, 2, 4, [3]) == 6 * 10 * 3 + 6 * 2 * 4 * 3 * 3 == 612
    assert gpu.train_flops(10, 2, 4, [3, 5]) == 612 + 6 * 10 * 5 + 6 * 2 * 4 * 5 * 5 == 2112
    L, d, s = 28, 1536, 16384
    assert gpu.train_flops(0, L, d, [s]) / s == 12 * L * d * s / 2

def test_bench_model_is_qwen15b_sized():
    "Qwen2.5-1.5B's shape with its 151,936-row vocabulary: 1.54 B parameters (the small tokenizer's 768 rows gave 1.31 B)."
    assert param_count(gpu.QWEN15B) == 1_543_714_304
    assert round(param_count({**gpu.QWEN15B, 'vocab_size': 768}) / 1e9, 2) == 1.31

@pytest.mark.parametrize('tied', [True, False])
def test_param_count_matches_transformers(tied):
    "`param_count` counts what transformers builds for a Qwen2 config (q/k/v biases, tied or untied head)."
    from transformers import Qwen2Config, Qwen2ForCausalLM
    c = dict(model_type='qwen2', hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=300, tie_word_embeddings=tied)
    m = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in c.items() if k != 'model_type'}))
    assert sum(p.numel() for p in m.parameters()) == param_count(c)

def test_run_settings_and_varied_examples():
    "The run's SFT settings (one GPU's micro-batch of 2, 16k tokens, bf16 autocast, checkpointing) and examples of varied lengths, so batches pad."
    r = gpu.run_settings(ROOT/'params'/'qwen2.5-1.5b-r1-traces.yaml')
    assert {k: r['sft'][k] for k in ('batch_size', 'max_length', 'precision', 'gradient_checkpointing', 'on_overlength')} == \
        dict(batch_size=2, max_length=16384, precision='auto', gradient_checkpointing='on', on_overlength='drop')
    assert r['vllm'] == dict(max_model_len=32768, gpu_memory_utilization=0.95)
    from orion_nb.models import train_tokenizer
    from orion_nb.sft import example_length
    tok = train_tokenizer()
    lens = [example_length(tok, ex) for ex in gpu.varied_examples(tok, 4, 512)]
    assert len(set(lens)) == 4 and max(lens) <= 512 and min(lens) < 0.6 * max(lens), lens

def test_gpu_bench_skips_without_a_gpu():
    import torch
    if torch.cuda.is_available(): pytest.skip('a GPU is here')
    r = subprocess.run([sys.executable, str(ROOT/'bench'/'gpu.py')], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == 'skipped: no GPU', r.stdout + r.stderr
