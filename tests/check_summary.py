"""Compare a regenerated run summary with the committed one: `python tests/check_summary.py [NEW] [--against OLD]`.

Accuracies, counts, intervals and every other value must be equal; floats that come out of training arithmetic
(losses, gradient norms, per-token NLLs: the `LOOSE` keys) may differ by a relative `--rtol` or an absolute `--atol`
(both 1e-6): fp32 training carries about 7 significant digits, and a spread over seeds or a small NLL is a difference
of such numbers (a clean clone's rerun differed there by at most 1e-7 absolute, 5e-6 relative, all else equal).
NEW defaults to reports/tiny/summary.json; OLD to that file as committed at HEAD (`git show HEAD:...`), so that
`make repro && python tests/check_summary.py` says whether a clean clone reproduces the committed reports.
Prints one line per difference and exits 1 when there is any, else prints `summary_matches: True`.
"""
import argparse, json, math, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOSE = ('stability', 'student_nll_per_token', 'loss')   # a key path holding one of these compares within rtol

def differences(new, old, rtol: float = 1e-6, path: str = '', atol: float = 1e-6) -> list[str]:
    "Every place where `new` differs from `old`, as 'path: committed OLD, now NEW' lines."
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f'{path}.{k}: committed {old[k]!r}, now missing' for k in old if k not in new]
        out += [f'{path}.{k}: not committed, now {new[k]!r}' for k in new if k not in old]
        return out + [d for k in old if k in new for d in differences(new[k], old[k], rtol, f'{path}.{k}', atol)]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(new, old)) for d in differences(a, b, rtol, f'{path}[{i}]', atol)]
    loose = any(k in path for k in LOOSE)
    if loose and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (new, old)):
        return [] if math.isclose(new, old, rel_tol=rtol, abs_tol=atol) else [f'{path}: committed {old!r}, now {new!r} (beyond rtol {rtol} and atol {atol})']
    same = type(new) is type(old) and (new == old or (isinstance(new, float) and math.isnan(new) and math.isnan(old)))   # NaN: nothing measured, both times
    return [] if same else [f'{path}: committed {old!r}, now {new!r}']

def committed(rel: str) -> dict:
    "The JSON file `rel` (relative to the repository) as committed at HEAD."
    r = subprocess.run(['git', 'show', f'HEAD:{rel}'], cwd=ROOT, capture_output=True, text=True)
    if r.returncode: sys.exit(f'check_summary: {rel} is not committed at HEAD ({r.stderr.strip()})')
    return json.loads(r.stdout)

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('new', nargs='?', default='reports/tiny/summary.json')
    ap.add_argument('--against', help='the summary to compare with (default: NEW as committed at HEAD)')
    ap.add_argument('--rtol', type=float, default=1e-6); ap.add_argument('--atol', type=float, default=1e-6)
    a = ap.parse_args(argv)
    new_path = Path(a.new) if Path(a.new).is_absolute() else ROOT/a.new
    if not new_path.is_file(): sys.exit(f'check_summary: no summary at {new_path}: run `make repro` first')
    old = json.loads(Path(a.against).read_text()) if a.against else committed(new_path.resolve().relative_to(ROOT).as_posix())
    diffs = differences(json.loads(new_path.read_text()), old, a.rtol, atol=a.atol)
    for d in diffs[:50]: print(d)
    if len(diffs) > 50: print(f'... and {len(diffs) - 50} more')
    print(f'summary_matches: {not diffs}')
    return 1 if diffs else 0

if __name__ == '__main__': sys.exit(main())
