"""Candidate skill gaps for the tiny world, measured cheaply on the shipped student (issue 25), before any ORION run.

For one candidate world (questions outside the student's mix), the shipped student is fine-tuned on the reference
solutions of 300 training questions with the tiny preset's SFT settings, and both are measured greedily on 150
validation questions. Prints `name: value` lines. Usage:
    python bench/gap_candidates.py CANDIDATE LR SEED EPOCHS     (CANDIDATE: long | long8 | big)
"""
import sys, json, time
from orion_nb import world
from orion_nb.headroom import reference_examples, val_accuracy
from orion_nb.sft import train_sft

STUDENT = 'models/orion-tiny-instruct'
CANDIDATES = {   # the student's mix: levels 1-5, values up to 99 (world.LEVEL_RANGES, world.MAX_VALUE)
    'long': dict(levels=(6, 7)),                                 # longer chains: 6-7 equations
    'long8': dict(levels=(7, 8)),                                # longer still: 7-8 equations
    'big': dict(ranges={l: (s * 10, n * 10) for l, (s, n) in list(world.LEVEL_RANGES.items())[:5]}, max_value=999),   # 3-digit values
}

if __name__ == '__main__':
    cand, lr, seed, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    kw, t = CANDIDATES[cand], time.time()
    train, val = world.generate(300, 'train', seed=0, **kw), world.generate(150, 'val', seed=0, **kw)
    out = f'/tmp/gap-{cand}-{lr}-{seed}-{epochs}'
    train_sft(STUDENT, reference_examples(train), out, dict(lr=lr, epochs=epochs, batch_size=16, seed=seed, precision='fp32'))
    base, tuned = val_accuracy(STUDENT, val, max_new_tokens=384), val_accuracy(f'{out}/model', val, max_new_tokens=384)
    for k, v in dict(base=base, tuned=tuned, gain=tuned - base, seconds=round(time.time() - t)).items(): print(f'{cand}_{k}: {v:.4f}' if isinstance(v, float) else f'{cand}_{k}: {v}')
