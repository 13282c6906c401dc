"SFT with TRL: completion-only labels with EOS, the truncation audit, LoRA, the step log, and DDP over 2 CPU processes."
import json, math, os, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch
from orion_nb.models import train_tokenizer, make_model, save_model, solve_messages
from orion_nb.recipes import example
from orion_nb.sft import SFTParams, make_trainer, train_sft, audit_lengths

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    tok = train_tokenizer(vocab_size=400)
    d = tmp_path_factory.mktemp('sft')
    return save_model(make_model(tok, dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1)), tok, d/'base'), tok

def examples(n=32):
    return [example(f'q{i}', solve_messages(f'What is {i} + {i}?'), f'{i} + {i} = {2 * i}. ' + 'So' * (i % 5) + f' \\boxed{{{2 * i}}}')
            for i in range(n)]

def test_labels_mask_prompt_keep_eos(base, tmp_path):
    path, tok = base
    exs = examples(4)
    tr = make_trainer(path, exs, tmp_path, SFTParams())
    row = tr.train_dataset[0]
    ids, labels = row['input_ids'], row['labels']
    im_end = tok.convert_tokens_to_ids('<|im_end|>')
    kept = [i for i, l in zip(ids, labels) if l != -100]
    prompt_len = len(tok.apply_chat_template(exs[0]['prompt'], add_generation_prompt=True, tokenize=True, return_dict=True)['input_ids'])
    assert all(l == -100 for l in labels[:prompt_len])                       # the prompt carries no loss
    assert all(l == i for i, l in zip(ids[prompt_len:], labels[prompt_len:]))  # the whole response does
    assert im_end in kept and tok.decode(kept).startswith('0 + 0 = 0.')         # EOS is inside the loss

def test_truncation_audit_refuses(base, tmp_path):
    path, tok = base
    exs = examples(8)
    longest = audit_lengths(tok, exs, 10**6)['max']
    with pytest.raises(ValueError, match=r'exceed max_length=\d+ tokens'):
        train_sft(path, exs, tmp_path/'o', dict(max_length=longest - 1, epochs=1))
    assert not (tmp_path/'o'/'model').exists()
    s = train_sft(path, exs, tmp_path/'d', dict(max_length=longest - 1, on_overlength='drop', epochs=1, batch_size=4))
    assert s['dropped'] and s['n_train'] == 8 - len(s['dropped'])

def test_lora_trains_and_merges(base, tmp_path):
    path, tok = base
    s = train_sft(path, examples(16), tmp_path, dict(lora=True, lora_r=4, epochs=1, batch_size=8, lr=1e-2, max_length=128))
    from orion_nb.models import load_model
    before, after = load_model(path), load_model(tmp_path/'model')
    diff = sum((a - b).abs().sum().item() for (n, a), (_, b) in zip(after.named_parameters(), before.named_parameters()))
    assert s['steps'] == 2 and diff > 0 and not any('lora' in n for n, _ in after.named_parameters())

def test_step_log_and_schedule(base, tmp_path):
    path, _ = base
    s = train_sft(path, examples(32), tmp_path, dict(epochs=2, batch_size=8, lr=1e-2, warmup=0.25, max_length=128))
    log = [json.loads(l) for l in open(tmp_path/'trainer_log.jsonl')]
    assert [r['step'] for r in log] == list(range(1, s['steps'] + 1)) and s['steps'] == 8
    lrs = [r['lr'] for r in log]
    assert max(lrs) <= 1e-2 and lrs.index(max(lrs)) <= 2 and lrs[-1] < max(lrs) / 5   # warmup then cosine decay
    assert all(math.isfinite(r['loss']) and r['grad_norm'] > 0 for r in log)
    assert log[-1]['loss'] < log[0]['loss']

DRIVER = textwrap.dedent('''
    import hashlib, json, os, sys, torch
    from trl import SFTTrainer
    from orion_nb.sft import main
    rank, out = int(os.environ['RANK']), sys.argv[2]
    seen = open(f'{out}/seen_{rank}.txt', 'w')
    step = SFTTrainer.training_step
    def training_step(self, model, inputs, *a, **k):
        for row, lab in zip(inputs['input_ids'].tolist(), inputs['labels'].tolist()):
            seen.write(hashlib.md5(str([t for t, l in zip(row, lab) if l != -100]).encode()).hexdigest() + '\\n')
        return step(self, model, inputs, *a, **k)
    SFTTrainer.training_step = training_step
    train = SFTTrainer.train
    def train_and_fingerprint(self, *a, **k):
        r = train(self, *a, **k)
        flat = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        open(f'{out}/params_{rank}.txt', 'w').write(repr(flat.double().sum().item()) + ' ' + repr(flat.abs().double().sum().item()))
        return r
    SFTTrainer.train = train_and_fingerprint
    main([sys.argv[1]])
''')

@pytest.mark.timeout(600)
def test_ddp_two_cpu_processes(base, tmp_path):
    "torchrun, 2 processes, gloo: different data per rank, identical weights after training, one save."
    path, _ = base
    train = tmp_path/'train.jsonl'
    train.write_text(''.join(json.dumps(e) + '\n' for e in examples(32)))
    cfg = tmp_path/'cfg.json'
    cfg.write_text(json.dumps(dict(model=str(path), train=str(train), out_dir=str(tmp_path/'out'),
                                   params=dict(epochs=1, batch_size=8, lr=1e-2, max_length=128, ddp_backend='gloo', sampling='random'))))   # 8 a step: 4 per rank
    (tmp_path/'driver.py').write_text(DRIVER)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([str(Path(sys.executable).parent/'torchrun'), '--nproc_per_node', '2', '--master_port', '29531',
                        str(tmp_path/'driver.py'), str(cfg), str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    seen = [set(open(tmp_path/f'seen_{k}.txt').read().split()) for k in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 16 and not seen[0] & seen[1]      # each rank its own half of the data
    assert open(tmp_path/'params_0.txt').read() == open(tmp_path/'params_1.txt').read()   # in sync
    s = json.loads((tmp_path/'out'/'sft_summary.json').read_text())
    assert s['world_size'] == 2 and s['steps'] == 4                           # 32 examples / (2 ranks x 4)
    assert s['batch'] == dict(effective=8, per_device=4, grad_accum=1, processes=2)
    log = (tmp_path/'out'/'trainer_log.jsonl').read_text().splitlines()
    assert len(log) == s['steps']                                              # written by one process only
    assert sorted(p.name for p in (tmp_path/'out'/'model').iterdir() if p.suffix == '.safetensors') == ['model.safetensors']


def test_bf16_stored_model_learns(base, tmp_path):
    "A model stored in bf16, trained a few steps at a small lr, changes (nearly) every weight: the master weights are fp32."
    from orion_nb.models import load_model
    path, tok = base
    m = load_model(path, dtype=torch.bfloat16); save_model(m, tok, tmp_path/'bf16')
    train_sft(tmp_path/'bf16', examples(24), tmp_path/'out', dict(epochs=1, batch_size=1, lr=1e-5, max_length=128, warmup=0.0))
    before, after = load_model(tmp_path/'bf16'), load_model(tmp_path/'out'/'model')
    changed = sum((a.float() != b.float()).sum().item() for a, b in zip(after.parameters(), before.parameters()))
    total = sum(p.numel() for p in before.parameters())
    assert changed / total > 0.9, f'{changed / total:.1%} of the weights changed'

def test_precision_settings(base):
    "'auto' is bf16 autocast on a GPU that has it, fp32 elsewhere; the weights load in fp32 whatever the stored dtype."
    from orion_nb.sft import sft_config, precision_flags
    assert precision_flags('fp32') == dict(bf16=False, fp16=False)
    assert precision_flags('bf16') == dict(bf16=True, fp16=False) and precision_flags('fp16') == dict(bf16=False, fp16=True)
    assert precision_flags('auto') == (dict(bf16=True, fp16=False) if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else dict(bf16=False, fp16=False))
    with pytest.raises(ValueError, match="precision must be one of"): precision_flags('half')
    c = sft_config(SFTParams(precision='fp32'), '/tmp/x')
    assert (c.bf16, c.fp16) == (False, False)

def test_gradient_checkpointing_is_a_setting_that_changes_no_number(base, tmp_path):
    "'auto' recomputes activations on GPUs only (TRL's default there); on or off, the losses, gradients and weights are the same."
    from orion_nb.sft import sft_config
    from orion_nb.models import load_model
    assert sft_config(SFTParams(), '/tmp/x').gradient_checkpointing == torch.cuda.is_available()
    assert sft_config(SFTParams(gradient_checkpointing='on'), '/tmp/x').gradient_checkpointing
    with pytest.raises(ValueError, match="SFT parameter 'gradient_checkpointing': expected str"):
        SFTParams.from_dict({'gradient_checkpointing': True})   # YAML's bare on
    logs, models = {}, {}
    for gc in ('on', 'off'):
        train_sft(base[0], examples(16), tmp_path/gc, dict(epochs=1, batch_size=4, lr=1e-2, max_length=128, gradient_checkpointing=gc))
        logs[gc] = [x for r in map(json.loads, open(tmp_path/gc/'trainer_log.jsonl')) for x in (r['loss'], r['grad_norm'])]
        models[gc] = load_model(tmp_path/gc/'model')
    assert len(logs['on']) == 8 and logs['on'] == pytest.approx(logs['off'], rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(models['on'].parameters(), models['off'].parameters()))

def test_python_launcher_trains_in_a_subprocess(base, tmp_path):
    "Every training goes through a launcher in a process of its own, 'python' too: never in the caller (a notebook's kernel)."
    from orion_nb.training import train
    path, _ = base
    data = tmp_path/'train.jsonl'; data.write_text(''.join(json.dumps(e) + '\n' for e in examples(8)))
    s = train(path, data, tmp_path/'out', dict(epochs=1, batch_size=4, max_length=128), launcher='python')
    assert s['pid'] != os.getpid() and s['steps'] == 2 and (tmp_path/'out'/'model').is_dir()

def test_forkserver_launcher_trains_as_python_does(base, tmp_path):
    "'forkserver' forks each training from a server that imported the libraries once: a process of its own, the same model."
    from orion_nb.training import train
    path, _ = base
    data = tmp_path/'train.jsonl'; data.write_text(''.join(json.dumps(e) + '\n' for e in examples(16)))
    p = dict(epochs=1, batch_size=4, lr=1e-2, max_length=128)
    a = train(path, data, tmp_path/'py', p, launcher='python', threads=1)
    b = train(path, data, tmp_path/'fs', p, launcher='forkserver', threads=1)
    c = train(path, data, tmp_path/'fs2', {**p, 'lr': 2e-2}, launcher='forkserver', threads=1)   # another, from the same server
    assert len({os.getpid(), a['pid'], b['pid'], c['pid']}) == 4 and b['threads'] == c['threads'] == 1
    log = lambda d: [{k: v for k, v in json.loads(l).items() if k != 'time'} for l in open(d/'trainer_log.jsonl')]
    assert log(tmp_path/'fs') == log(tmp_path/'py') and log(tmp_path/'fs2') != log(tmp_path/'py')
    weights = lambda d: (d/'model'/'model.safetensors').read_bytes()
    assert weights(tmp_path/'fs') == weights(tmp_path/'py')   # bit for bit (training_args.bin differs: it holds the output folder)
    assert json.loads((tmp_path/'fs'/'cache_key.json').read_text())['launch'] == {'launcher': 'forkserver', 'threads': 1}
    with pytest.raises(subprocess.CalledProcessError, match='orion-sft'):   # a failed training fails the call
        train(path, data, tmp_path/'bad', {**p, 'max_length': 8}, launcher='forkserver', threads=1)
    import resource
    from orion_nb.launch import stop_forkserver
    cpu = lambda: resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    before = cpu(); stop_forkserver(); stop_forkserver()
    assert cpu() - before > 1   # the server and its trainings, waited for: their CPU time is this process's children's

def test_killed_training_resumes(base, tmp_path):
    "With checkpoints every 2 steps, a training killed after its first checkpoint resumes from it and ends at the same step."
    import signal, time
    path, _ = base
    data = tmp_path/'train.jsonl'; data.write_text(''.join(json.dumps(e) + '\n' for e in examples(32)))
    params = dict(epochs=2, batch_size=2, lr=1e-2, max_length=128, save_steps=2)
    cfg = tmp_path/'cfg.json'; cfg.write_text(json.dumps(dict(model=str(path), train=str(data), out_dir=str(tmp_path/'out'), params=params)))
    cmd = [str(Path(sys.executable).parent/'orion-sft'), str(cfg)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    t0 = time.time()
    while not list((tmp_path/'out').glob('checkpoint-*/trainer_state.json')) and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (tmp_path/'out'/'sft_summary.json').exists(), 'the training ended before it could be killed'
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path/'out'/'sft_summary.json').read_text())
    assert s['resumed_from'] and 'checkpoint-' in s['resumed_from'] and s['steps'] == 32
    steps = [json.loads(l)['step'] for l in open(tmp_path/'out'/'trainer_log.jsonl')]
    assert steps == list(range(1, 33))                                       # every step logged once
    assert not list((tmp_path/'out').glob('checkpoint-*'))                   # a finished training keeps no checkpoint

def test_checkpoints_are_bounded_while_training(base, tmp_path):
    "At most `save_total_limit` (default 1) checkpoints exist during a training, and none once it has finished."
    from orion_nb.sft import StepLog
    seen = []
    class Count(StepLog):
        def on_save(self, args, state, control, **kw): seen.append(len(list(Path(args.output_dir).glob('checkpoint-*'))))
    from orion_nb.sft import _callback
    s = train_sft(base[0], examples(16), tmp_path/'out', dict(epochs=2, batch_size=2, lr=1e-2, max_length=128, save_steps=2),
                  callbacks=[_callback(Count)(tmp_path/'x.jsonl')])
    assert s['steps'] == 16 and len(seen) >= 7 and max(seen) <= 2, seen     # the new one is written before the oldest goes
    assert sorted(p.name for p in (tmp_path/'out').iterdir() if p.name.startswith('checkpoint-')) == []
    assert (tmp_path/'out'/'model'/'config.json').is_file()
    from orion_nb.sft import sft_config
    assert sft_config(SFTParams(), tmp_path).save_total_limit == 1 and sft_config(SFTParams(save_total_limit=3), tmp_path).save_total_limit == 3

def test_lora_has_its_own_lr_and_config_passes_through(base, tmp_path):
    "LoRA trains at `lora_lr`; any SFTConfig field can be set through `extra` (unknown names refused); report_to is a setting."
    from orion_nb.sft import sft_config
    p = SFTParams(lora=True, lr=1e-5, lora_lr=2e-4, extra={'logging_first_step': True}, report_to='tensorboard')
    c = sft_config(p, tmp_path)
    assert c.learning_rate == 2e-4 and c.logging_first_step is True and c.report_to == ['tensorboard']
    assert sft_config(SFTParams(lr=1e-5, lora_lr=2e-4), tmp_path).learning_rate == 1e-5
    with pytest.raises(ValueError, match="extra: 'learning_rat' is not an SFTConfig field"): SFTParams(extra={'learning_rat': 1.0}).check()
    with pytest.raises(ValueError, match="extra: 'learning_rate' is set by SFTParams.lr"): SFTParams(extra={'learning_rate': 1.0}).check()

def test_padding_free_only_with_flash_attention():
    from orion_nb.sft import pick_sampling
    assert pick_sampling('auto', 'sdpa') == 'group_by_length'
    with pytest.raises(ValueError, match='padding_free needs a flash attention implementation'): pick_sampling('padding_free', 'sdpa')

def test_padding_free_training_summary_is_written():
    "A padding-free training under flash attention reaches its summary (it raised there, losing the finished training)."
    from types import SimpleNamespace
    from orion_nb.sft import _summary
    p = SFTParams(sampling='padding_free', attn_implementation='flash_attention_2')
    s = _summary('m', p, dict(n=1, tokens=9, max=9, mean=9.0, max_length=99, over=[]), 1, SimpleNamespace(global_step=1, training_loss=0.5), 1.0, 1, None)
    assert s['sampling'] == 'padding_free'

def test_gpu_bench_skips_or_runs():
    "bench/gpu.py: without a GPU it says so and exits 0 (with one, it prints its figures)."
    r = subprocess.run([sys.executable, str(Path(__file__).parents[1]/'bench'/'gpu.py')], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ('skipped: no GPU' in r.stdout) != torch.cuda.is_available() or 'sft_tokens_per_s:' in r.stdout

def test_forkserver_that_vanishes_mid_training_is_replaced(base, tmp_path):
    "The fork server killed while its training runs (its child ends with it): the training runs again once, in a fresh server."
    import signal, threading, time
    from multiprocessing import forkserver
    from orion_nb.training import train
    from orion_nb.launch import stop_forkserver
    path, _ = base
    data = tmp_path/'train.jsonl'; data.write_text(''.join(json.dumps(e) + '\n' for e in examples(32)))
    p = dict(epochs=3, batch_size=2, lr=1e-2, max_length=128)
    stop_forkserver()
    def kill_server():
        t0 = time.time()
        while not (tmp_path/'out'/'trainer_log.jsonl').exists() and time.time() - t0 < 300: time.sleep(0.05)
        os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    k = threading.Thread(target=kill_server); k.start()
    s = train(path, data, tmp_path/'out', p, launcher='forkserver', threads=1)
    k.join()
    assert s['steps'] == 48 and (tmp_path/'out'/'model'/'config.json').is_file()
    steps = [json.loads(l)['step'] for l in open(tmp_path/'out'/'trainer_log.jsonl')]
    assert steps == list(range(1, 49))          # the retried training's log, whole and once
    stop_forkserver()

def test_forked_training_that_crashes_is_run_again(base, tmp_path):
    "A forked training that dies by SIGSEGV (seen once in a cold tiny run) runs again once and finishes; its log whole."
    import signal, threading, time
    from multiprocessing import forkserver
    from orion_nb.training import train
    from orion_nb.launch import stop_forkserver
    path, _ = base
    data = tmp_path/'train.jsonl'; data.write_text(''.join(json.dumps(e) + '\n' for e in examples(32)))
    p = dict(epochs=3, batch_size=2, lr=1e-2, max_length=128)
    stop_forkserver()
    def crash_training():
        t0 = time.time()
        while not (tmp_path/'out'/'trainer_log.jsonl').exists() and time.time() - t0 < 300: time.sleep(0.05)
        server = forkserver._forkserver._forkserver_pid
        kids = [int(d) for d in os.listdir('/proc') if d.isdigit() and Path(f'/proc/{d}/stat').exists()
                and Path(f'/proc/{d}/stat').read_text().rsplit(')', 1)[1].split()[1] == str(server)]
        for k in kids: os.kill(k, signal.SIGSEGV)
    k = threading.Thread(target=crash_training); k.start()
    s = train(path, data, tmp_path/'out', p, launcher='forkserver', threads=1)
    k.join()
    assert s['steps'] == 48 and (tmp_path/'out'/'model'/'config.json').is_file()
    stop_forkserver()
