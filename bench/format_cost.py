"""What a change of format costs the tiny student, apart from what it has to learn (issue 25).

The headroom gate fine-tunes the shipped student on the world's reference solutions, written in the student's own
format, and gains; the recipes' targets are in other formats (Short-CoT's "Step i:" lines, the teacher's R1-style
`<think>` CoTs) and lose. Here the same 300 training questions of the skill-gap world (levels 6-7) are written four
ways and the student is fine-tuned on each with the gap preset's SFT settings, then measured greedily on the
validation split:
  native: the reference solution (the headroom gate's data)
  think:  the same text inside `<think>...</think>`, then the boxed answer (R1's wrapper, nothing else new)
  step:   the scripted short teacher without slips (Short-CoT's format, the same equations)
  long:   the scripted teacher's long CoT (the Long-CoT recipe's targets)
Prints `name: value` lines. Usage: python bench/format_cost.py FORMAT SEED [EPOCHS]
"""
import sys, time
from orion_nb import world
from orion_nb.baselines import scripted_short
from orion_nb.headroom import val_accuracy
from orion_nb.models import solve_messages
from orion_nb.recipes import example
from orion_nb.sft import train_sft

STUDENT, LEVELS = 'models/orion-tiny-instruct', (6, 7)

def _think(r):
    body, tail = r['solution'].rsplit('\n', 1)
    return f'<think>\n{body}\n</think>\n\n{tail}'

FORMATS = {'native': lambda r: r['solution'], 'think': _think,
           'step': lambda r: scripted_short(r['question'], slip=0.0), 'long': lambda r: world.teacher_cot(r['question'])}

if __name__ == '__main__':
    fmt, seed, epochs, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 5.0, time.time()
    train, val = world.generate(300, 'train', seed=0, levels=LEVELS), world.generate(150, 'val', seed=0, levels=LEVELS)
    exs = [example(r['id'], solve_messages(r['question'])[:1], FORMATS[fmt](r)) for r in train]
    out = f'/tmp/format-{fmt}-{seed}-{epochs}'
    s = train_sft(STUDENT, exs, out, dict(lr=1e-3, epochs=epochs, batch_size=16, seed=seed, precision='fp32', max_length=1536))
    tuned = val_accuracy(f'{out}/model', val, max_new_tokens=768)
    print(f'{fmt}_seed{seed}_tuned: {tuned:.4f}')
    print(f'{fmt}_seed{seed}_train_loss: {s.get("train_loss", float("nan")):.4f}')
    print(f'{fmt}_seed{seed}_seconds: {round(time.time() - t)}')
