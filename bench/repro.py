"""Wall time of the tiny reproduction (`orion run params/tiny.yaml`) on this machine, cold and cached.

Prints one `name: value` per line:
  check_seconds                 `orion check` of the parameter file (a new process, its start included)
  student_cached                whether the base student was already built (its build is part of a cold run otherwise)
  repro_seconds_cold            a run into a fresh run directory, all seeds of the parameter file
  repro_seconds_cached          the same command again: every stage unchanged, nothing redone
  cached_fraction               cached / cold
  repro_seconds_cold_one_seed   (with --one-seed) a fresh run with `seeds: [0]`
  stage_seconds_<stage>         seconds of each stage in the cold run (from its manifest)
  cpu_utilization               CPU seconds of every process of the cold run / (its wall seconds x the cores)
  cpu_utilization_<stage>       the same for each stage (its kernel and every process it started)
  speedup_<lever>               (with --levers) each speed lever kept, measured side by side on the same work of the run:
                                parallel_train  two trainings one after the other at 2 threads / side by side at 1 thread each
                                parallel_eval   four models' evaluations likewise
                                eval_budgets    the base student on the benchmarks at the default budget / at the per-set budgets
                                no_grad_checkpointing  one training (ORION, seed 0, 1 thread) recomputing activations / keeping them
                                bf16            the same training in fp32 / with bf16 autocast (the run's sft_precision, when bf16)
                                gen_shards      the base student's reflections as one job at 2 threads / in the run's gen_shards jobs
                                                side by side at 1 thread each
                                forkserver      two trainings (Short-CoT, seeds 0 and 1) started as `orion-sft` processes / forked
                                                from a server that imported the libraries once (sft_launcher: forkserver)
Usage: python bench/repro.py [--params params/tiny.yaml] [--one-seed] [--levers] [--runs DIR --reports DIR] [--cached]
With --cached only check_seconds and repro_seconds_cached are measured, on the existing run of the default folders
(`runs/`, `reports/`: after `make repro`), or of --runs/--reports.
With --runs/--reports the cold and cached runs go there (e.g. `--runs runs --reports reports` regenerates the committed
reports while measuring); the run directory must not exist yet. By default both go to a temporary folder.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import yaml
from orion_nb.jobs import cores
from orion_nb.runner import child_cpu_seconds as child_cpu   # CPU seconds of this process's ended children, theirs included

ROOT = Path(__file__).resolve().parents[1]


def run(params, runs, reports, cpu=None):
    "Wall seconds of `orion run`; its CPU seconds are appended to `cpu` when given."
    t, c = time.time(), child_cpu()
    subprocess.run([str(Path(sys.executable).parent/'orion'), 'run', str(params), '--runs', str(runs), '--reports', str(reports)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if cpu is not None: cpu.append(child_cpu() - c)
    return time.time() - t

def check_seconds(params) -> float:
    "Wall seconds of `orion check` on `params`, in a process of its own as a user runs it."
    t = time.time()
    subprocess.run([str(Path(sys.executable).parent/'orion'), 'check', str(params)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t

def timed(f):
    "Wall seconds of `f()`, with everything it and its processes print (progress bars, training logs) silenced."
    sys.stdout.flush(); saved = [os.dup(1), os.dup(2)]; null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1); os.dup2(null, 2)
    try:
        t = time.time(); f(); return time.time() - t
    finally:
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
        for fd in (*saved, null): os.close(fd)

def levers(run_dir: Path, p: dict, d: Path) -> None:
    "Each speed lever side by side on the same work of the finished run `run_dir`, in fresh folders (nothing cached)."
    from orion_nb.core import RunDir, model_tag
    from orion_nb.evaluate import EvalJob, evaluate_model, set_sampling
    from orion_nb.jobs import run_jobs
    from orion_nb.training import train
    run = RunDir(run_dir)
    params_of = lambda recipe, seed: json.loads((run.file('train', 'run', recipe=recipe, seed=seed)/'sft_summary.json').read_text())['params']
    two = [('orion', 0), ('long_cot', 0)]
    def trainings(tag, workers, threads):
        def one(job):
            return train(run.student(), run.file('recipes', 'examples', recipe=job[0]), d/tag/f'{job[0]}_{job[1]}', params_of(*job), threads=threads)
        return lambda: run_jobs(one, two, workers, threads, 'thread')
    print(f"speedup_parallel_train: {timed(trainings('serial', 1, 2)) / timed(trainings('parallel', 2, 1)):.2f}")
    def training(tag, **change):
        return lambda: train(run.student(), run.file('recipes', 'examples', recipe='orion'), d/tag, {**params_of('orion', 0), **change}, threads=1)
    print(f"speedup_no_grad_checkpointing: {timed(training('gc_on', gradient_checkpointing='on')) / timed(training('gc_off', gradient_checkpointing='off')):.2f}")
    if p.get('sft_precision') == 'bf16':
        print(f"speedup_bf16: {timed(training('fp32', precision='fp32')) / timed(training('bf16', precision='bf16')):.2f}")
    if p.get('sft_launcher') == 'forkserver':
        def launched(launcher):
            return lambda: [train(run.student(), run.file('recipes', 'examples', recipe='short_cot'), d/launcher/str(s), params_of('short_cot', s),
                                  launcher=launcher, threads=1) for s in (0, 1)]
        print(f"speedup_forkserver: {timed(launched('python')) / timed(launched('forkserver')):.2f}")
    if p.get('gen_shards', 1) > 1:
        from orion_nb.generate import SamplingParams
        from orion_nb.jobs import gen_jobs, job_pool, run_gen_job
        from orion_nb.reflection import reflect
        sp = SamplingParams(temperature=p.get('reflect_temperature', 0.8), n=p.get('reflect_m', 2), max_new_tokens=p.get('student_max_new_tokens', 512))
        def reflections(tag, n, threads):
            js = gen_jobs(reflect, run.student(), run.records('exposure', 'base'), d/tag/'store.jsonl', n, dict(params=sp, workers=1, progress=False),
                          batch_size=p.get('gen_batch_size', 32))
            def go():
                with job_pool(n, threads) as pool: [f.result() for f in [pool.submit(run_gen_job, j) for j in js]]
            return go
        print(f"speedup_gen_shards: {timed(reflections('shares_1', 1, 2)) / timed(reflections('shares_n', p['gen_shards'], 1)):.2f}")
    sets, models = run.eval_sets(), [run.student()] + [str(run.model(r, s)) for r, s in [('orion', 0), ('long_cot', 0), ('short_cot', 0)]]
    budget = lambda n: set_sampling(n, p.get('eval_n', 1), p.get('eval_max_new_tokens', 512), max_new_tokens_by_set=p.get('eval_max_new_tokens_by_set'))
    def evals(tag, workers, threads, names, sampling):
        jobs = [EvalJob(m, {n: (sets[n], sampling(n), d/tag/f'{i}_{n}_store.jsonl', None) for n in names}, batch_size=p.get('gen_batch_size', 32))
                for i, m in enumerate(models if tag.startswith('eval') else models[:1])]
        return lambda: run_jobs(evaluate_model, jobs, workers, threads, 'process')
    print(f"speedup_parallel_eval: {timed(evals('eval_serial', 1, 2, ['world_test'], budget)) / timed(evals('eval_parallel', 2, 1, ['world_test'], budget)):.2f}")
    bench = [n for n in sets if n != 'world_test']
    if bench and p.get('eval_max_new_tokens_by_set'):
        flat = lambda n: set_sampling(n, p.get('eval_n', 1), p.get('eval_max_new_tokens', 512))
        print(f"speedup_eval_budgets: {timed(evals('budget_flat', 1, 2, bench, flat)) / timed(evals('budget_set', 1, 2, bench, budget)):.2f}")

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--params', default='params/tiny.yaml'); ap.add_argument('--one-seed', action='store_true')
    ap.add_argument('--runs', help='runs folder (default: a temporary one)'); ap.add_argument('--reports', help='reports folder')
    ap.add_argument('--levers', action='store_true', help='also measure each speed lever side by side (speedup_* lines)')
    ap.add_argument('--cached', action='store_true', help='only check_seconds and the cached re-run of an existing run (default: runs/, reports/)')
    a = ap.parse_args()
    p = yaml.safe_load((ROOT/a.params).read_text())
    print(f'check_seconds: {min(check_seconds(ROOT/a.params) for _ in range(3)):.2f}')   # the best of three: the machine is shared
    if a.cached:
        runs, reports = ROOT/(a.runs or 'runs'), ROOT/(a.reports or 'reports')
        if not (runs/p['run_name']/'manifest.json').is_file(): sys.exit(f'no run at {runs/p["run_name"]}: run `make repro` first')
        print(f'repro_seconds_cached: {min(run(ROOT/a.params, runs, reports) for _ in range(3)):.2f}'); return
    cache = ROOT/p.get('student_cache_dir', '.cache/orion_nb')
    if p.get('student', 'world-tiny') == 'world-tiny':   # this code's default student (its key includes the code), not any built one
        from orion_nb.student import StudentRecipe, student_path
        print(f"student_cached: {(student_path(cache, StudentRecipe(seed=p.get('world_seed', 0)))/'student.json').is_file()}")
    elif (ROOT/p['student']/'student.json').is_file():   # a shipped student: checked by hash and gates, never rebuilt
        from orion_nb.student import verify_student
        print(f"student_shipped_sha256: {verify_student(ROOT/p['student'], p.get('student_gates', 'require'))['sha256'][:16]}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        runs, reports = ROOT/(a.runs or d/'runs'), ROOT/(a.reports or d/'reports')
        if (runs/p['run_name']).exists(): sys.exit(f'{runs/p["run_name"]} exists: a cold run needs a fresh run directory')
        cpu = []
        cold = run(ROOT/a.params, runs, reports, cpu)
        warm = run(ROOT/a.params, runs, reports)
        print(f'repro_seconds_cold: {cold:.1f}'); print(f'repro_seconds_cached: {warm:.1f}'); print(f'cached_fraction: {warm / cold:.3f}')
        m = json.loads((runs/p['run_name']/'manifest.json').read_text())
        if a.one_seed:
            one = d/'one.yaml'; one.write_text(yaml.safe_dump({**p, 'seeds': [0], 'run_name': p['run_name'] + '_one'}))
            print(f'repro_seconds_cold_one_seed: {run(one, d/"runs", d/"reports"):.1f}')
        for s, v in m['stages'].items(): print(f"stage_seconds_{s}: {v['seconds']}")
        print(f'cpu_utilization: {cpu[0] / (cold * cores()):.3f}')
        for s, v in m['stages'].items():
            if v.get('cpu_seconds') is not None: print(f"cpu_utilization_{s}: {v['cpu_seconds'] / (v['seconds'] * cores()):.3f}")
        if a.levers: levers(runs/p['run_name'], p, d)

if __name__ == '__main__': main()
