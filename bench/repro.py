"""Wall time of the tiny reproduction (`orion run params/tiny.yaml`) on this machine, cold and cached.

Prints one `name: value` per line:
  student_cached                whether the base student was already built (its build is part of a cold run otherwise)
  repro_seconds_cold            a run into a fresh run directory, all seeds of the parameter file
  repro_seconds_cached          the same command again: every stage unchanged, nothing redone
  cached_fraction               cached / cold
  repro_seconds_cold_one_seed   (with --one-seed) a fresh run with `seeds: [0]`
  stage_seconds_<stage>         seconds of each stage in the cold run (from its manifest)
Usage: python bench/repro.py [--params params/tiny.yaml] [--one-seed] [--runs DIR --reports DIR]
With --runs/--reports the cold and cached runs go there (e.g. `--runs runs --reports reports` regenerates the committed
reports while measuring); the run directory must not exist yet. By default both go to a temporary folder.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]

def run(params, runs, reports):
    t = time.time()
    subprocess.run([str(Path(sys.executable).parent/'orion'), 'run', str(params), '--runs', str(runs), '--reports', str(reports)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--params', default='params/tiny.yaml'); ap.add_argument('--one-seed', action='store_true')
    ap.add_argument('--runs', help='runs folder (default: a temporary one)'); ap.add_argument('--reports', help='reports folder')
    a = ap.parse_args()
    p = yaml.safe_load((ROOT/a.params).read_text())
    cache = ROOT/p.get('student_cache_dir', '.cache/orion_nb')
    if p.get('student', 'world-tiny') == 'world-tiny':   # this code's default student (its key includes the code), not any built one
        from orion_nb.student import StudentRecipe, student_path
        print(f"student_cached: {(student_path(cache, StudentRecipe(seed=p.get('world_seed', 0)))/'student.json').is_file()}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        runs, reports = ROOT/(a.runs or d/'runs'), ROOT/(a.reports or d/'reports')
        if (runs/p['run_name']).exists(): sys.exit(f'{runs/p["run_name"]} exists: a cold run needs a fresh run directory')
        cold = run(ROOT/a.params, runs, reports)
        warm = run(ROOT/a.params, runs, reports)
        print(f'repro_seconds_cold: {cold:.1f}'); print(f'repro_seconds_cached: {warm:.1f}'); print(f'cached_fraction: {warm / cold:.3f}')
        m = json.loads((runs/p['run_name']/'manifest.json').read_text())
        if a.one_seed:
            one = d/'one.yaml'; one.write_text(yaml.safe_dump({**p, 'seeds': [0], 'run_name': p['run_name'] + '_one'}))
            print(f'repro_seconds_cold_one_seed: {run(one, d/"runs", d/"reports"):.1f}')
        for s, v in m['stages'].items(): print(f"stage_seconds_{s}: {v['seconds']}")

if __name__ == '__main__': main()
