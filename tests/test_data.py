"The real benchmark files load through `orion_nb.data` with the right counts and answers."
import json, math
from pathlib import Path
import pytest
from orion_nb.data import load_benchmark, load_train_pool, load_problems, BENCHMARKS, TRAIN_POOLS
from orion_nb.core import DataError

SHARED = Path(__file__).resolve().parents[1].parent/'shared'/'data'
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f'benchmark files not found at {SHARED} (see its README)')

COUNTS = {'gsm_hard': 1319, 'math500': 500, 'aime24': 30, 'amc23': 40, 'gsm8k': 1319}

@needs_shared
@pytest.mark.parametrize('name', list(COUNTS))
def test_benchmark_counts(name):
    ds = load_benchmark(name, SHARED)
    assert len(ds) == COUNTS[name]
    assert set(ds.column_names) >= {'id', 'question', 'answer', 'solution', 'source', 'level', 'subject'}
    assert len(set(ds['id'])) == len(ds)
    assert all(q.strip() for q in ds['question']) and all(a.strip() for a in ds['answer'])

@needs_shared
def test_benchmark_answers():
    aime = load_benchmark('aime24', SHARED)
    assert aime[0]['id'] == 'aime24/60' and aime[0]['answer'] == '204'
    assert any(a.startswith('0') for a in aime['answer'])            # leading zeros kept, e.g. '025'
    amc = load_benchmark('amc23', SHARED)
    assert amc[0]['answer'] == '27' and '.0' not in ''.join(amc['answer'])
    gh = load_benchmark('gsm_hard', SHARED)
    raw = [json.loads(l)['target'] for l in (SHARED/'benchmarks/gsm_hard/test.jsonl').open()]
    assert all(math.isclose(float(a), t) for a, t in zip(gh['answer'], raw))
    assert gh[0]['answer'] == '-9867630'
    g8 = load_benchmark('gsm8k', SHARED)
    assert g8[0]['answer'] == '18' and '####' in g8[0]['solution']
    m5 = load_benchmark('math500', SHARED)
    assert m5[0]['answer'] == r'\left( 3, \frac{\pi}{2} \right)' and m5[0]['level'] == 2 and m5[0]['subject'] == 'Precalculus'

@needs_shared
def test_train_pools():
    g = load_train_pool('gsm8k', SHARED)
    assert len(g) == 7473 and g[0]['answer'] == '72'
    with pytest.raises(DataError, match=r"train/math/train.jsonl:5530: field 'answer': is empty"):
        load_train_pool('math', SHARED)                               # two real rows box an empty answer
    with pytest.warns(UserWarning, match=r'skipped 2 invalid row\(s\)') as w:
        m = load_train_pool('math', SHARED, on_invalid='skip')
    assert ':5530:' in str(w[0].message) and ':5532:' in str(w[0].message)
    assert len(m) == 7498 and set(m['level']) == {1, 2, 3, 4, 5, None}
    assert sum(l is None for l in m['level']) == 2                    # the two 'Level ?' rows are kept, level None
    assert m[0]['id'].startswith('math_train/train/algebra/') and m[0]['subject'] == 'Algebra'

@needs_shared
def test_env_var_folder(monkeypatch):
    monkeypatch.setenv('ORION_DATA_DIR', str(SHARED))
    assert len(load_benchmark('aime24')) == 30

def test_hub_path_uses_datasets(monkeypatch):
    "With no local path the Hub id goes through `datasets.load_dataset`; rows are validated the same way."
    import datasets
    seen = {}
    def fake(hub_id, config=None, split=None):
        seen.update(hub_id=hub_id, config=config, split=split)
        return datasets.Dataset.from_list([{'problem': 'p', 'solution': r'so \boxed{\frac12}', 'level': 'Level 2', 'type': 'Algebra'}])
    monkeypatch.delenv('ORION_DATA_DIR', raising=False)
    monkeypatch.setattr(datasets, 'load_dataset', fake)
    ds = load_train_pool('math')
    assert seen == dict(hub_id=TRAIN_POOLS['math'].hub_id, config=None, split='train')
    assert ds[0]['answer'] == r'\frac12' and ds[0]['level'] == 2 and ds[0]['id'] == 'math_train/0'
    def bad(hub_id, config=None, split=None): return datasets.Dataset.from_list([{'question': 'q', 'answer': 'no marker'}])
    monkeypatch.setattr(datasets, 'load_dataset', bad)
    with pytest.raises(DataError, match=r"openai/gsm8k:1: field 'answer': has no '#### <answer>' line"):
        load_benchmark('gsm8k')

@pytest.mark.parametrize('line,err', [
    ('{"input": "q", "target": 1.0', "bad.jsonl:2: invalid JSON"),
    ('{"input": "q"}', "bad.jsonl:2: field 'target': is missing"),
    ('{"input": "", "target": 1.0}', "bad.jsonl:2: field 'input': is empty"),
    ('{"input": "q", "target": ""}', "bad.jsonl:2: field 'target': is empty"),
    ('{"input": "q", "target": [1]}', "bad.jsonl:2: field 'target': expected a string or number, got list"),
    ('{"input": 3, "target": 1.0}', "bad.jsonl:2: field 'input': expected a string, got int"),
])
def test_malformed_input_names_file_line_field(tmp_path, line, err):
    p = tmp_path/'bad.jsonl'
    p.write_text('{"input": "ok", "target": 2.0}\n' + line + '\n')
    with pytest.raises(DataError) as e: load_benchmark('gsm_hard', p)
    assert err in str(e.value)

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='math500: no file at'): load_benchmark('math500', tmp_path)

def test_load_problems_roundtrip(tmp_path):
    recs = [dict(id=f'w/{i}', question=f'q{i}', answer=str(i), solution=None, source='w', level=1, subject=None) for i in range(3)]
    p = tmp_path/'p.jsonl'; p.write_text(''.join(json.dumps(r) + '\n' for r in recs))
    assert load_problems(p) == recs
