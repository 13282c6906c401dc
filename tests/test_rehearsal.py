"""The rehearsal's pieces on Qwen's real tokenizer (fetched by `make tokenizer`; skipped without it): both chat
templates, and the loss mask TRL builds from them, which must cover the completion and nothing of the prompt."""
import pytest
from orion_nb.rehearsal import qwen_tokenizer, random_student, tokenizer_ok

pytestmark = pytest.mark.skipif(not tokenizer_ok(), reason="Qwen's tokenizer not fetched: make tokenizer")

COMPLETION = '<think>\nFirst 17 * 3 = 51, then 51 + 4 = 55.\n</think>\n\nSo the total is \\boxed{55}.'

@pytest.mark.parametrize('template', ['qwen2.5', 'qwen3'])
def test_loss_mask_on_real_template(template, tmp_path):
    "TRL's loss mask (its labels) on the real tokenizer is the assistant's reply and its end-of-turn token, under either template."
    from orion_nb.models import solve_messages
    from orion_nb.recipes import example
    from orion_nb.sft import SFTParams, make_trainer
    model = random_student(tmp_path/'m', template)
    ex = example('q0', solve_messages('Tom has 17 boxes of 3 apples and 4 more apples. How many apples?'), COMPLETION)
    row = make_trainer(model, [ex], tmp_path/'out', SFTParams(epochs=1, batch_size=1, max_length=512)).train_dataset[0]
    tok = qwen_tokenizer(template)
    learned = tok.decode([t for t, y in zip(row['input_ids'], row['labels']) if y != -100])   # TRL's labels: -100 where no loss
    prompt = tok.decode([t for t, y in zip(row['input_ids'], row['labels']) if y == -100])
    assert learned.strip() == COMPLETION + '<|im_end|>', learned       # the reply whole, think block included, and where it ends
    assert prompt.endswith('<|im_start|>assistant\n') and 'boxed{55}' not in prompt
    assert ('You are Qwen, created by Alibaba Cloud' in prompt) == (template == 'qwen2.5')   # Qwen2.5's default system prompt; Qwen3 has none


from pathlib import Path
import json
ROOT = Path(__file__).resolve().parents[1]

def _run(name):
    d = ROOT/'runs'/name
    if not (d/'manifest.json').is_file(): pytest.skip(f'{d} not rehearsed: make rehearsal')
    return d, json.loads((d/'manifest.json').read_text())

@pytest.mark.parametrize('name', ['rehearsal-qwen2.5-api', 'rehearsal-qwen2.5-traces', 'rehearsal-qwen3-api'])
def test_rehearsal_ran_the_real_path(name):
    "After `make rehearsal`: every stage finished; every training ran in 2 accelerate processes at the file's effective batch, its checkpoints gone; vLLM generated."
    d, m = _run(name)
    from orion_nb.runner import pipeline_notebooks, stage_name
    assert {k: s['status'] for k, s in m['stages'].items()} == {stage_name(nb): 'done' for nb in pipeline_notebooks(ROOT/'nbs'/'pipeline')}
    sums = [json.loads(p.read_text()) for p in d.rglob('sft_summary.json')]
    assert sums and all(s['batch'] == dict(effective=4, per_device=1, grad_accum=2, processes=2) for s in sums)
    assert not list(d.rglob('checkpoint-*'))                     # sft_save_steps 1 wrote them; a finished training keeps none
    assert list(d.rglob('*generations*.jsonl'))


def test_api_rehearsal_counted_its_spend_and_sampled_per_set():
    "The API file's rehearsal: every store of an API teacher has a spend ledger with every request billed; AIME24 got its own sample count."
    d, m = _run('rehearsal-qwen2.5-api')
    ledgers = [json.loads(p.read_text()) for p in d.rglob('*.spend.json')]
    assert len(ledgers) == 3 and all(x['sent'] == x['billed'] > 0 and x['completion_tokens'] > 0 for x in ledgers), ledgers
    rows = [json.loads(l) for l in (d/'07_evaluate'/'outputs'/'orion_seed0__aime24.jsonl').read_text().splitlines()]
    assert {r['sample'] for r in rows} == set(range(m['params']['eval_n_by_set']['aime24']))
