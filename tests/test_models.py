"Tokenizer, chat template, tiny Qwen2 factory, and loading through from_pretrained from a local folder."
import sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # the package when it is not pip-installed
from orion_nb import world
from orion_nb.models import (TINY, SOLVE_PROMPT, REFERENCE_PROMPT, fill, solve_messages, reference_messages,
                             train_tokenizer, tokenizer_corpus, make_model, n_params, save_model, load_model,
                             load_tokenizer, token_lengths)


@pytest.fixture(scope='module')
def tok():
    return train_tokenizer(tokenizer_corpus(300))


def test_round_trip(tok):
    "World texts, chat markup and arbitrary unicode decode back to themselves."
    texts = world.corpus(20, seed=4) + ['<|im_start|>user\nhi<|im_end|>\n', 'Ünïcödé ∑ 你好 \t\n  x', '']
    for t in texts: assert tok.decode(tok(t)['input_ids']) == t


def test_digits_split(tok):
    "Every digit is its own token, whatever the number; no token mixes a digit with anything else."
    for n in ('7', '42', '1234567890', '3.25', '19/5'):
        pieces = [p for p in tok.tokenize(f' {n} apples') if any(c.isdigit() for c in p)]
        assert pieces == [c for c in n if c.isdigit()], (n, pieces)
    assert all(len(t) == 1 for t in tok.get_vocab() if any(c.isdigit() for c in t))


def test_special_tokens(tok):
    "Qwen's special tokens and <think>/</think> are single tokens; decoding without specials keeps <think>."
    for t in ('<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>'):
        assert len(tok(t)['input_ids']) == 1
    assert (tok.eos_token, tok.pad_token) == ('<|im_end|>', '<|endoftext|>')
    ids = tok('<think>\nhm\n</think>\n\nok<|im_end|>')['input_ids']
    assert tok.decode(ids, skip_special_tokens=True) == '<think>\nhm\n</think>\n\nok'


def test_chat_template_with_think(tok):
    "ChatML as Qwen2.5 writes it, <think> kept in assistant content, generation prompt, assistant mask."
    answer = '<think>\nLet me see. 2 + 3 = 5.\n</think>\n\nThe answer is \\boxed{5}'
    msgs = [{'role': 'system', 'content': 'Be brief.'}] + solve_messages('What is 2 + 3?', answer)
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert text == ('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n' + fill(SOLVE_PROMPT, question='What is 2 + 3?')
                    + '<|im_end|>\n<|im_start|>assistant\n' + answer + '<|im_end|>\n')
    prompt = tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith('<|im_start|>assistant\n') and text.startswith(prompt)
    assert not tok.apply_chat_template(msgs[:2], tokenize=False).endswith('assistant\n')
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(enc['input_ids'], enc['assistant_masks']) if m]
    assert tok.decode(kept) == answer + '<|im_end|>'


def test_prompt_templates():
    "Both forms ask for \\boxed{}; fill checks its fields; a replaced template is used as given."
    for t in (SOLVE_PROMPT, REFERENCE_PROMPT): assert '\\boxed{}' in t
    m = reference_messages('Q?', 'R.', 'A')
    assert m[0]['content'].endswith('Q?\n\nReference solution:\nR.') and m[1] == {'role': 'assistant', 'content': 'A'}
    assert solve_messages('Q?', template='Answer: {question}')[0]['content'] == 'Answer: Q?'
    with pytest.raises(KeyError): fill(REFERENCE_PROMPT, question='Q?')
    with pytest.raises(KeyError): fill(SOLVE_PROMPT, question='Q?', reference='R')


def test_save_and_load_local_folder(tok, tmp_path):
    "save_pretrained then the same from_pretrained path that takes Hub ids: equal tokenizer, weights, outputs."
    import torch
    model = make_model(tok, seed=3)
    save_model(model, tok, tmp_path/'m')
    m2, t2 = load_model(tmp_path/'m'), load_tokenizer(str(tmp_path/'m'))
    assert t2.get_vocab() == tok.get_vocab() and t2.chat_template == tok.chat_template
    assert (t2.eos_token, t2.pad_token) == ('<|im_end|>', '<|endoftext|>')
    for (k, a), (_, b) in zip(model.state_dict().items(), m2.state_dict().items()): assert torch.equal(a, b), k
    enc = t2.apply_chat_template(solve_messages('Mia has 3 apples. How many apples does Mia have now?'),
                                 add_generation_prompt=True, return_tensors='pt', return_dict=True)
    g1 = model.generate(**enc, max_new_tokens=8, do_sample=False)
    g2 = m2.generate(**enc, max_new_tokens=8, do_sample=False)
    assert torch.equal(g1, g2)
    assert load_model(tmp_path/'m', dtype=torch.bfloat16).dtype == torch.bfloat16


def test_factory_parameter_count(tok):
    "TINY is the ~0.59 M model the student uses; sizes follow the config; tied embeddings counted once."
    m = make_model(tok)
    cfg = m.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (TINY['hidden_size'], TINY['num_hidden_layers'], TINY['intermediate_size'])
    assert cfg.vocab_size % 64 == 0 and cfg.vocab_size >= len(tok) and cfg.tie_word_embeddings
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    assert 550_000 < n_params(m) < 650_000
    h, f, L, v, kv = 128, 512, 2, cfg.vocab_size, 2 * 32
    per_layer = 2 * h * h + h + 2 * (h * kv + kv) + 3 * h * f + 2 * h   # q (+bias), o; k, v (+bias); MLP; 2 norms
    assert n_params(m) == v * h + L * per_layer + h
    big = make_model(tok, dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4))
    assert n_params(big) > 3 * n_params(m)
    assert m.generation_config.eos_token_id == [tok.convert_tokens_to_ids('<|im_end|>'), tok.convert_tokens_to_ids('<|endoftext|>')]


def test_token_lengths(tok):
    "Teacher traces are several times longer than short solutions, and fit a 1024-token context with the prompt."
    L = token_lengths(tok, world.generate(200, 'train', seed=6))
    assert L['ratio'] >= 2.5 and L['teacher_max'] + L['question_max'] + 40 < 1024
