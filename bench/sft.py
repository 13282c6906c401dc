"""SFT throughput on a Mix-Long recipe of the tiny world: plain padded batches against length-grouped batches.

Prints one `name: value` per line:
  examples, tokens             size of the training set (long teacher CoTs : short solutions = 1 : 4)
  tokens_per_s_<method>        trained (non-pad) tokens per second of `train_sft`, best of --repeats
  tokens_per_s_padded          the plain random-order padded batches (TRL's default)
  tokens_per_s_best            the fastest method
  best_method, ratio           which one, and its speed over padded
  max_loss_diff                largest |per-example loss in a padded batch - the same example alone| (same model)
  pad_fraction_<method>        share of the positions in the batches that are padding
Usage: python bench/sft.py [--n 200] [--repeats 2] [--methods random,group_by_length]
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import torch
from orion_nb import world
from orion_nb.models import train_tokenizer, make_model, save_model, solve_messages, TINY
from orion_nb.recipes import example
from orion_nb.sft import train_sft, make_trainer, SFTParams

def mix_long(n, seed=0):
    "Mix-Long: one in five answers is a long teacher CoT, the rest short solutions."
    recs = world.generate(n, 'train', seed=seed)
    return [example(r['id'], solve_messages(r['question']), world.teacher_cot(r['question'], seed=0) if i % 5 == 0 else r['solution'])
            for i, r in enumerate(recs)]

def per_example_losses(model, batch):
    "Mean response-token loss of each row of a collated batch."
    with torch.no_grad():
        logits = model(input_ids=batch['input_ids'], attention_mask=batch['attention_mask']).logits[:, :-1]
    labels = batch['labels'][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction='none')
    mask = labels != -100
    return ((nll * mask).sum(1) / mask.sum(1)).tolist()

def pad_fraction(trainer):
    "Share of padding positions over one epoch of `trainer`'s batches."
    pad = total = 0
    for b in trainer.get_train_dataloader():
        pad += (b['attention_mask'] == 0).sum().item(); total += b['attention_mask'].numel()
    return pad / total

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=200); ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--methods', default='random,group_by_length'); ap.add_argument('--batch', type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(2)
    exs = mix_long(a.n)
    tok = train_tokenizer()
    with tempfile.TemporaryDirectory() as d:
        base = save_model(make_model(tok, TINY), tok, Path(d)/'base')
        lens = [len(tok.apply_chat_template(e['prompt'] + e['completion'], tokenize=True, return_dict=True)['input_ids']) for e in exs]
        print(f'examples: {len(exs)}'); print(f'tokens: {sum(lens)}')
        speed, diffs = {}, []
        for m in a.methods.split(','):
            p = SFTParams(epochs=1, batch_size=a.batch, max_length=max(lens), sampling=m, lr=1e-3)
            tr = make_trainer(base, exs, Path(d)/f'probe_{m}', p)
            print(f'pad_fraction_{m}: {pad_fraction(tr):.3f}')
            b = next(iter(tr.get_train_dataloader()))
            model = tr.model.eval()
            together = per_example_losses(model, b)
            for i in range(len(together)):
                keep = b['attention_mask'][i].bool()
                alone = per_example_losses(model, {k: v[i:i + 1, keep] for k, v in b.items() if k in ('input_ids', 'attention_mask', 'labels')})
                diffs.append(abs(alone[0] - together[i]))
            best = 0.0
            for r in range(a.repeats):
                s = train_sft(base, exs, Path(d)/f'{m}_{r}', p)
                best = max(best, sum(lens) / s['seconds'])
            speed[m] = best
            print(f'tokens_per_s_{m}: {best:.0f}')
        top = max(speed, key=speed.get)
        print(f"tokens_per_s_padded: {speed['random']:.0f}")
        print(f'tokens_per_s_best: {speed[top]:.0f}')
        print(f'best_method: {top}')
        print(f"ratio: {speed[top] / speed['random']:.2f}")
        print(f'max_loss_diff: {max(diffs):.2e}')

if __name__ == '__main__': main()
