"""Bench and audit of `orion_nb.grading` on the 180 real labelled P-ALIGN outputs (AIME24 + AIME25).

Prints one `name: value` per line:
  label_agreement             share of outputs where `grade` agrees with the file's `label`
  disagreements, unexplained  how many disagree, and how many of those lack a reason in KNOWN_DISAGREEMENTS
  disagreement_N              one line per disagreement: key, label, our verdict, reason
  pool_start_s                seconds for `workers` fresh worker processes to import math-verify
  outputs_per_s               grade_many over the 180 outputs, warm pool (median of --repeats runs)
  outputs_per_s_cold          the same, first run, including the pool's start
  outputs_per_s_math_verify   warm, with fast_numbers=False: every answer through the math-verify workers
  max_call_s                  slowest single `grade` call over the 180 outputs (warm pool)
  pathological_max_s          slowest `grade` call on the pathological inputs, with --timeout as the deadline
Usage: python bench/grading.py [--workers 2] [--repeats 5] [--timeout 3]
"""
import argparse, json, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
from orion_nb.grading import GradePool, audit, grade, grade_many

DATA = ROOT.parent/'shared'/'data'/'model_outputs'/'p-align-qwen2.5-7b'
FILES = [DATA/'aime24-output.jsonl', DATA/'aime25-output.jsonl']
PATHOLOGICAL = [r'\boxed{9^{9^{9^{9}}}}', r'\boxed{' + '(' * 5000 + '1' + ')' * 5000 + '}',
                'x' * 10**6 + r'\boxed{' + '1+' * 500_000 + '1}', '{' * 10**6]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--timeout', type=float, default=3.0)
    args = ap.parse_args()
    missing = [str(f) for f in FILES if not f.exists()]
    if missing: sys.exit(f'real labelled outputs absent: {missing}')
    outs, golds = [], []
    for f in FILES:
        for line in f.read_text().splitlines():
            rec = json.loads(line); outs += rec['output']; golds += [rec['answer']] * len(rec['output'])
    n = len(outs)

    t = time.perf_counter()
    with GradePool(args.workers) as pool:
        pool.wait_ready(); start = time.perf_counter() - t
        grade_many(outs, golds, pool=pool, timeout=args.timeout, progress=False)
        cold = time.perf_counter() - t
        warm, mv = [], []
        for _ in range(args.repeats):
            t = time.perf_counter(); grade_many(outs, golds, pool=pool, timeout=args.timeout, progress=False)
            warm.append(time.perf_counter() - t)
            t = time.perf_counter(); grade_many(outs, golds, pool=pool, timeout=args.timeout, progress=False, fast_numbers=False)
            mv.append(time.perf_counter() - t)
        calls = []
        for o, g in zip(outs, golds):
            t = time.perf_counter(); grade(o, g, pool=pool, timeout=args.timeout); calls.append(time.perf_counter() - t)
        patho = []
        for o in PATHOLOGICAL:
            t = time.perf_counter(); grade(o, 1, pool=pool, timeout=args.timeout); patho.append(time.perf_counter() - t)

    a = audit(FILES, workers=args.workers, timeout=args.timeout)
    print(f"label_agreement: {a['agreement']:.4f}")
    print(f"agree: {a['agree']}/{a['n']}")
    print(f"disagreements: {len(a['disagreements'])}")
    print(f"unexplained: {len(a['unexplained'])}")
    for i, d in enumerate(a['disagreements']):
        print(f"disagreement_{i}: {d['key']} label={int(d['label'])} ours={int(d['ours'])} "
              f"extracted={d['extracted']!r} theirs={d['theirs']} reason={d['reason'] or 'UNEXPLAINED'}")
    print(f'workers: {args.workers}')
    print(f'pool_start_s: {start:.2f}')
    print(f'outputs_per_s: {n / statistics.median(warm):.0f}')
    print(f'outputs_per_s_runs: {" ".join(f"{n / w:.0f}" for w in warm)}')
    print(f'outputs_per_s_cold: {n / cold:.0f}')
    print(f'outputs_per_s_math_verify: {n / statistics.median(mv):.0f}')
    print(f'max_call_s: {max(calls):.3f}')
    print(f'median_call_s: {statistics.median(calls):.6f}')
    print(f'pathological_max_s: {max(patho):.2f}')


if __name__ == '__main__': main()
