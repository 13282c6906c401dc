"""Wrong input stops before work with a message naming the parameter (file:line) or the file, line and field; a
misbehaving server fails the sample it answered, never the run. One table per entry point a user calls: `orion
check` / `orion run`, the loaders, and `generate_resumable` against a faulty server on 127.0.0.1."""
import json, re, warnings
from pathlib import Path
import pytest
from orion_nb.core import DataError
from orion_nb.data import load_benchmark, load_train_pool, load_problems
from orion_nb.cli import main
from orion_nb.runner import run_pipeline
from orion_nb.teacher import load_traces

ROOT = Path(__file__).resolve().parents[1]
TINY = (ROOT/'params'/'tiny.yaml').read_text()

def params_with(tmp_path, **changes) -> Path:
    "tiny.yaml with the lines of `changes` replaced (name: YAML text; None drops the line), as bad.yaml."
    lines = [l for l in TINY.splitlines() if l.split(':')[0] not in changes]
    pf = tmp_path/'bad.yaml'; pf.write_text('\n'.join(lines + [f'{k}:{v}' for k, v in changes.items() if v is not None]) + '\n')
    return pf

# (changes to tiny.yaml, the message `orion check` must print: the line is where the name stands in bad.yaml)
PARAMS = [
    ({'select_rule': ' frist'}, r"parameter 'select_rule': 'frist' not allowed; choose from first, shortest, random"),
    ({'recipes': ' [orion, lemma]'}, r"parameter 'recipes': 'lemma' not allowed; choose from orion, "),
    ({'seeds': ' [a, b]'}, r"parameter 'seeds': expected a list of int, got 'a'"),
    ({'seeds': ''}, r"parameter 'seeds': has no value \(the default is \[0\]\)"),
    ({'seeds': ' []'}, r"parameter 'seeds': is empty"),
    ({'seeds': ' [0, 0]'}, r"parameter 'seeds': repeats 0"),
    ({'train_n': ' -5'}, r"parameter 'train_n': -5 out of range; must be 1..1000000"),
    ({'long_share': ' 1.5'}, r"parameter 'long_share': 1.5 out of range; must be 0..1"),
    ({'sft_lr': ' 0'}, r"parameter 'sft_lr': 0 out of range; must be > 0"),
    ({'eval_temperature': ' "0.0"'}, r"parameter 'eval_temperature': expected float \(default 0.0\), got str"),
    ({'student': ' ./no/such/model'}, r"parameter 'student': no model folder \(with config.json\) at .*/no/such/model"),
    ({'student': ' a/b/c'}, r"parameter 'student': 'a/b/c' is neither a local folder nor a Hub id"),
    ({'data_dir': ' ../no_such_data'}, r"parameter 'data_dir': no folder at .*/no_such_data"),
    ({'gen_backend': ' vlm'}, r"parameter 'gen_backend': 'vlm' not allowed; choose from transformers, vllm, openai"),
    ({'train_pool': ' gsm9k'}, r"parameter 'train_pool': 'gsm9k' not allowed; choose from world, gsm8k, math"),
    ({'benchmarks': ' [aime25]'}, r"parameter 'benchmarks': 'aime25' not allowed; choose from gsm_hard, math500"),
    ({'reflect_students': ' [base, tutor]'}, r"parameter 'reflect_students': 'tutor' not allowed; choose from base, sft_teacher"),
    ({'teacher': ' column'}, r"parameter 'teacher': 'column' needs teacher_traces_path"),
    ({'eval_k': ' [1, 4]'}, r"parameter 'eval_k': 4 is more than eval_n \(1\)"),
    ({'solve_prompt': ' "Solve: {problem}"'}, r"parameter 'solve_prompt': placeholders \['problem'\]; the prompt must hold exactly \{question\}"),
    ({'stages': ' [06_trian]'}, r"parameter 'stages': '06_trian' not a stage; choose from 00_data, "),
    ({'short_teacher': ' openai'}, r"parameter 'short_teacher': 'openai' needs short_model"),
    ({'short_source': ' teacher', 'short_teacher': ' none'}, r"parameter 'short_source': 'teacher' needs the short teacher's CoTs, but short_teacher is 'none'"),
    ({'correction_teacher': ' vllm'}, r"parameter 'correction_teacher': 'vllm' needs correction_model \(or teacher_model\)"),
    ({'correction_teacher': ' scripted', 'train_pool': ' math'}, r"parameter 'correction_teacher': 'scripted' writes only for world questions, not train_pool 'math'"),
    ({'lema_per_question': ' 0'}, r"parameter 'lema_per_question': 0 out of range; must be 1..1024"),
    ({'correction_prompt': ' "Fix {attempt}"'}, r"parameter 'correction_prompt': placeholders \['attempt'\]; the prompt must hold exactly \{question\}, \{attempt\}, \{answer\}"),
    ({'judge': ' openai'}, r"parameter 'judge': 'openai' needs judge_model"),
    ({'train_workers': ' many'}, r"parameter 'train_workers': expected 'auto' or an integer, got str \('many'\)"),
    ({'eval_workers': ' 0'}, r"parameter 'eval_workers': 0 out of range; must be 1..1024"),
    ({'train_executor': ' process'}, r"parameter 'train_executor': 'process' not allowed; choose from thread, ray"),
    ({'gen_workers': ' lots'}, r"parameter 'gen_workers': expected 'auto' or an integer, got str \('lots'\)"),
    ({'gen_shards': ' 0'}, r"parameter 'gen_shards': 0 out of range; must be 1..1024"),
    ({'sft_gradient_checkpointing': ' on'}, r"parameter 'sft_gradient_checkpointing': expected str \(default 'auto'\), got bool"),
    ({'sft_launcher': ' forkserve'}, r"parameter 'sft_launcher': 'forkserve' not allowed; choose from python, forkserver, torchrun, accelerate"),
    ({'reflect_attempt': ' longest'}, r"parameter 'reflect_attempt': 'longest' not allowed; choose from first, shortest"),
    ({'form_boxes': ' two'}, r"parameter 'form_boxes': 'two' not allowed; choose from last, one"),
    ({'journey_n': ' -1'}, r"parameter 'journey_n': -1 out of range; must be 0..10000"),
    ({'student_gates': ' ignore'}, r"parameter 'student_gates': 'ignore' not allowed; choose from require, report"),
    ({'exposure_temprature': ' 0.8'}, r"unknown parameter 'exposure_temprature' \(did you mean 'exposure_temperature'\?\)"),
]

@pytest.mark.parametrize('changes,msg', PARAMS, ids=lambda x: str(x)[:40] if isinstance(x, dict) else '')
def test_orion_check(changes, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    pf = params_with(tmp_path, **changes)
    line = next(i for i, l in enumerate(pf.read_text().splitlines(), 1) if l.split(':')[0] in changes)
    assert main(['check', str(pf)]) == 2
    err = capsys.readouterr().err
    assert re.search(re.escape(f'bad.yaml:{line}: ') + msg, err), err

def test_stages_select_without_changing_what_is_valid(tmp_path, monkeypatch, capsys):
    "Setting `stages:` leaves every other stage's parameter valid (it used to make them 'unknown')."
    monkeypatch.chdir(ROOT)
    assert main(['check', str(params_with(tmp_path, stages=' [06_train, 07_evaluate]'))]) == 0, capsys.readouterr().err

def test_orion_run_stops_before_work(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ValueError, match=r"bad.yaml:\d+: parameter 'train_n': -5 out of range"):
        run_pipeline(params_with(tmp_path, train_n=' -5'), runs_dir=tmp_path/'runs', reports_dir=tmp_path/'reports', log=lambda *a: None)
    assert not (tmp_path/'runs').exists()

# --- loaders: (loader, rows as JSONL text, the message naming file:line and field) -----------------------------------
AIME = '{"id": 60, "problem": "What is 1+1?", "answer": "2", "solution": "1+1=2"}'
def aime(**kw): return json.dumps({**json.loads(AIME), **kw})
def math_row(**kw): return json.dumps({'problem': 'P?', 'solution': 'so \\boxed{3}', 'level': 'Level 2', 'type': 'Algebra', 'unique_id': 'train/a/1.json', **kw})
BIG = 'x' * 10_000_000

LOADERS = {'aime24': lambda p, **kw: load_benchmark('aime24', p, **kw), 'amc23': lambda p, **kw: load_benchmark('amc23', p, **kw),
           'math': lambda p, **kw: load_train_pool('math', p, **kw), 'problems': lambda p, **kw: load_problems(p, **kw),
           'traces': lambda p, **kw: load_traces(p, **kw)}
ROWS = [   # (case, loader, file bytes, line, field, message)
    ('not UTF-8', 'aime24', (AIME + '\n' + aime(id=61)[:20]).encode() + b'\xff' + aime(id=61)[20:].encode(), 2, None, r'not UTF-8 \(byte 0xff at column 21\)'),
    ('bad JSON after a blank line', 'aime24', (AIME + '\n\n{"id": 61,\n').encode(), 3, None, r'invalid JSON'),
    ('not an object', 'aime24', (AIME + '\n[1, 2]\n').encode(), 2, None, r'expected a JSON object, got list'),
    ('solution not a string', 'math', (math_row() + '\n' + math_row(unique_id='train/a/2.json', solution=5)).encode(), 2, 'solution', r'expected a string, got int'),
    ('gold NaN', 'amc23', b'{"id": 1, "question": "Q", "answer": NaN}\n', 1, 'answer', r'not a finite number'),
    ('gold Infinity', 'amc23', b'{"id": 1, "question": "Q", "answer": -Infinity}\n', 1, 'answer', r'not a finite number'),
    ('gold 1e400', 'amc23', b'{"id": 1, "question": "Q", "answer": 1e400}\n', 1, 'answer', r'not a finite number'),
    ('gold "nan"', 'aime24', aime(answer='nan').encode(), 1, 'answer', r'not a finite number'),
    ('gold unbalanced', 'aime24', aime(answer='\\frac{1}{2').encode(), 1, 'answer', r'unbalanced braces'),
    ('10 MB question', 'aime24', aime(problem=BIG).encode(), 1, 'problem', r'10000000 characters, more than max_chars\[.question.\]=100000'),
    ('dict id', 'aime24', aime(id={'a': 1}).encode(), 1, 'id', r'expected a string or an integer, got dict'),
    ('duplicate ids', 'problems', b'{"id": "a", "question": "Q", "answer": "1", "source": "s"}\n\n{"id": "a", "question": "R", "answer": "2", "source": "s"}\n', 3, 'id', r"duplicate id 'a' \(first at line \d\)"),
    ('integer trace', 'traces', b'{"id": "q1", "trace": "a \\\\boxed{1}"}\n\n{"id": "q2", "trace": 7}\n', 3, 'trace', r'expected a string, got int'),
    ('null trace', 'traces', b'{"id": "q1", "trace": null}\n', 1, 'trace', r'is missing'),
    ('empty trace', 'traces', b'{"id": "q1", "trace": "  "}\n', 1, 'trace', r'is empty'),
    ('trace without id', 'traces', b'{"trace": "t"}\n', 1, 'id', r'is missing'),
    ('lone surrogate in a question', 'aime24', aime(problem='What is \ud800 1+1?').encode(), 1, 'problem', r'a lone surrogate \(\\ud800\) at character 9'),
    ('lone surrogate in a trace', 'traces', b'{"id": "q1", "trace": "ok"}\n{"id": "q2", "trace": "x\\udfff"}\n', 2, 'trace', r'a lone surrogate \(\\udfff\) at character 2'),
]

@pytest.mark.parametrize('case,loader,data,line,field,msg', ROWS, ids=[r[0] for r in ROWS])
def test_loader_names_file_line_field(case, loader, data, line, field, msg, tmp_path):
    f = tmp_path/'x.jsonl'; f.write_bytes(data)
    with pytest.raises(DataError) as e: LOADERS[loader](f)
    where = re.escape(f'{f}:{line}: ') + (re.escape(f"field '{field}': ") if field else '')
    assert re.search(where + '.*?' + msg, str(e.value)), str(e.value)

@pytest.mark.parametrize('case,loader,data,line,field,msg', ROWS, ids=[r[0] for r in ROWS])
def test_skip_names_every_bad_row(case, loader, data, line, field, msg, tmp_path):
    "`on_invalid='skip'` skips each kind of bad row (warning with its file:line) and keeps the good ones."
    good = {'aime24': aime(id=99), 'amc23': '{"id": 99, "question": "Q", "answer": 3.0}', 'math': math_row(unique_id='train/z/9.json'),
            'traces': '{"id": "q9", "trace": "t"}', 'problems': '{"id": "z", "question": "Q", "answer": "1", "source": "s"}'}[loader]
    f = tmp_path/'x.jsonl'; f.write_bytes((good + '\n').encode() + data + b'\n')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always'); got = LOADERS[loader](f, on_invalid='skip')
    text = '\n'.join(str(x.message) for x in w)
    assert re.search(re.escape(f'{f}:{line + 1}: ') + '.*' + msg, text), text
    assert len(got) >= 1

def test_extra_limits_are_named_options(tmp_path):
    f = tmp_path/'x.jsonl'; f.write_text(aime(problem='x' * 50) + '\n')
    assert len(load_benchmark('aime24', f)) == 1
    with pytest.raises(DataError, match=r"field 'problem': 50 characters, more than max_chars\['question'\]=10"):
        load_benchmark('aime24', f, max_chars={'question': 10})


def test_duplicate_training_example_ids_are_located(tmp_path):
    "Two training examples with one id: the file, the second line and the field, naming the first."
    from orion_nb.sft import load_examples
    ex = lambda i, a: json.dumps({'id': i, 'prompt': [{'role': 'user', 'content': 'q'}], 'completion': [{'role': 'assistant', 'content': a}]})
    f = tmp_path/'train.jsonl'; f.write_text(ex('a', '1') + '\n' + ex('b', '2') + '\n\n' + ex('a', '3') + '\n')
    with pytest.raises(DataError, match=re.escape(f"{f}:4: field 'id': duplicate id 'a' (first at line 1)")): load_examples(f)
