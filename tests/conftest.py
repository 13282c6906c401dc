"Shared fixtures. Generation ones are prefixed `gen_`."
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def gen_vllm_python() -> str | None:
    "A Python that can `import vllm`: $ORION_VLLM_PYTHON if set (empty: none), else this one or ROOT/.venv-vllm's."
    env = os.environ.get('ORION_VLLM_PYTHON')
    cands = [env] if env is not None else [sys.executable, str(ROOT/'.venv-vllm'/'bin'/'python')]
    for py in filter(None, cands):
        if not Path(py).exists(): continue
        r = subprocess.run([py, '-c', "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"],
                           capture_output=True, timeout=60)
        if r.returncode == 0: return py
    return None


def gen_env(**kw) -> dict:
    "Environment for a subprocess that imports this checkout's `orion_nb`."
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
           'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), 'VLLM_CPU_KVCACHE_SPACE': '1'}
    return {**env, **kw}


@pytest.fixture(scope='session')
def gen_vllm_py():
    "The vLLM Python, or skip."
    py = gen_vllm_python()
    if py is None:
        pytest.skip('vLLM is not installed (here, nor in .venv-vllm, nor at $ORION_VLLM_PYTHON): see the vLLM install notes')
    return py


@pytest.fixture(scope='session')
def gen_tiny_dir(tmp_path_factory):
    "A tiny random Qwen2 with its ChatML tokenizer, saved with `save_pretrained` (`base/`) plus a LoRA adapter (`lora/`)."
    import torch
    from peft import LoraConfig, get_peft_model
    from orion_nb import models
    d = tmp_path_factory.mktemp('gen_tiny')
    tok = models.train_tokenizer()
    models.save_model(models.make_model(tok, {'initializer_range': 0.1}), tok, d/'base')
    torch.manual_seed(1)
    lora = get_peft_model(models.make_model(tok, {'initializer_range': 0.1}), LoraConfig(r=4, target_modules=['q_proj', 'v_proj'], init_lora_weights=False))
    lora.save_pretrained(d/'lora')
    return d
