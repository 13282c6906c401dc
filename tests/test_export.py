"orion_nb.export on a small fake run: every format written, then loaded back the way its trainer reads it."
import json
import datasets, huggingface_hub, pytest
from orion_nb.core import write_jsonl
from orion_nb.export import cli_export, export_run, push_to_hub

SYSTEM = {'role': 'system', 'content': 'Think step by step.'}


def _examples(system: bool, **extra) -> list[dict]:
    "Three prompt–completion rows over two questions (the first with a system message when `system`)."
    return [{'id': i, 'prompt': ([SYSTEM] if system and k == 0 else []) + [{'role': 'user', 'content': f'What is {k} + 2?'}],
             'completion': [{'role': 'assistant', 'content': f'<think>{k} + 2 = {k + 2}</think>\n\\boxed{{{k + 2}}}'}], **extra}
            for k, i in enumerate(['a', 'b', 'b#1'])]


@pytest.fixture
def run(tmp_path):
    "A run folder whose recipe stage holds `orion` (with a system message) and `orion@sft_teacher` (with a provenance key)."
    st = tmp_path/'run'/'05_recipes'; st.mkdir(parents=True)
    write_jsonl(st/'orion.jsonl', _examples(True))
    write_jsonl(st/'orion_at_sft_teacher.jsonl', _examples(False, source='gsm8k'))
    (st/'recipes.json').write_text(json.dumps(['orion', 'orion@sft_teacher']))
    (tmp_path/'run'/'manifest.json').write_text(json.dumps({'params': {'teacher': 'scripted'}, 'params_hash': 'h'}))
    return tmp_path/'run'


@pytest.fixture(scope='module')
def tok():
    from orion_nb.models import train_tokenizer, tokenizer_corpus
    return train_tokenizer(tokenizer_corpus(300), vocab_size=400)


def test_export_all_formats(run, tmp_path, tok):
    from trl.data_utils import apply_chat_template, is_conversational
    out = tmp_path/'out'
    done = export_run(run, out)
    assert sorted(done) == ['hf', 'llamafactory', 'trl']
    want = {'orion': _examples(True), 'orion_at_sft_teacher': _examples(False, source='gsm8k')}

    # Hugging Face: same rows back (provenance column kept), a card with Hub front matter
    assert [p.name for p in done['hf']] == list(want)
    for p in done['hf']:
        assert datasets.load_from_disk(str(p)).to_list() == want[p.name]
        card = huggingface_hub.DatasetCard((p/'README.md').read_text())
        assert card.data.task_categories == ['text-generation'] and 'reasoning-distillation' in card.data.tags
        assert '| teacher | scripted |' in card.text and '| examples | 3 |' in card.text and '| questions | 2 |' in card.text
    assert '`source`' in (out/'hf'/'orion_at_sft_teacher'/'README.md').read_text()

    # TRL: conversational rows, rendered by the chat template (system message included)
    for p in done['trl']:
        ds = datasets.load_dataset('json', data_files=str(p), split='train', cache_dir=str(tmp_path/'cache'))
        assert ds.column_names == ['id', 'prompt', 'completion'] and len(ds) == 3
        for row in ds:
            assert is_conversational(row)
            r = apply_chat_template(row, tok)
            assert r['prompt'].endswith('<|im_start|>assistant\n') and r['completion'].startswith('<think>')
        from orion_nb.sft import load_examples                  # and as orion-sft reads its training sets
        assert [e['id'] for e in load_examples(p)] == ['a', 'b', 'b#1']
    first = apply_chat_template(datasets.load_dataset('json', data_files=str(out/'trl'/'orion.jsonl'), split='train',
                                                      cache_dir=str(tmp_path/'cache'))[0], tok)
    assert first['prompt'].startswith('<|im_start|>system\nThink step by step.<|im_end|>')

    # LLaMA-Factory (sharegpt, OpenAI-style): every entry's file, columns and role tags
    info = json.loads((out/'llamafactory'/'dataset_info.json').read_text())
    assert sorted(info) == ['orion_orion', 'orion_orion_at_sft_teacher']
    for name, e in info.items():
        rows = json.loads((out/'llamafactory'/e['file_name']).read_text())
        assert e['formatting'] == 'sharegpt' and e['columns'] == {'messages': 'messages'} and len(rows) == 3
        tags = e['tags']
        for r in rows:
            roles = [m[tags['role_tag']] for m in r['messages']]
            assert roles in ([tags['user_tag'], tags['assistant_tag']], [tags['system_tag'], tags['user_tag'], tags['assistant_tag']])
    orion = json.loads((out/'llamafactory'/'orion.json').read_text())
    assert orion[0]['messages'][0] == SYSTEM and orion[1]['messages'][-1]['content'].endswith('\\boxed{3}')


def test_export_alpaca(run, tmp_path):
    done = export_run(run, tmp_path/'out', formats=['llamafactory'], llamafactory_format='alpaca')
    info = json.loads(done['llamafactory'][-1].read_text())
    for e in info.values():
        rows = json.loads((tmp_path/'out'/'llamafactory'/e['file_name']).read_text())
        assert e.get('formatting', 'alpaca') == 'alpaca' and 'tags' not in e
        assert all(set(e['columns'].values()) <= set(r) for r in rows)
    rows = json.loads((tmp_path/'out'/'llamafactory'/'orion.json').read_text())
    assert rows[0]['instruction'] == 'What is 0 + 2?' and rows[0]['system'] == SYSTEM['content'] and rows[0]['input'] == ''
    assert rows[1]['system'] == '' and rows[1]['output'].endswith('\\boxed{3}')


def test_export_errors(run, tmp_path):
    with pytest.raises(FileNotFoundError, match='run folder not found'): export_run(tmp_path/'missing', tmp_path/'o')
    with pytest.raises(FileNotFoundError, match='recipe stage folder not found'): export_run(tmp_path, tmp_path/'o')
    with pytest.raises(ValueError, match=r"formats: unknown \['parquet'\]"): export_run(run, tmp_path/'o', formats=['parquet'])
    with pytest.raises(ValueError, match='llamafactory_format'): export_run(run, tmp_path/'o', llamafactory_format='xml')
    assert not (tmp_path/'o').exists()


def test_push_to_hub_recorded(run, monkeypatch):
    calls = []
    monkeypatch.setattr(datasets.Dataset, 'push_to_hub', lambda self, repo_id, **kw: calls.append((repo_id, kw['config_name'], kw['token'], len(self))))
    monkeypatch.setattr(huggingface_hub.HfApi, 'upload_file', lambda self, **kw: calls.append((kw['repo_id'], kw['path_in_repo'])))
    plan = push_to_hub(run, 'me/orion', token='hf_t', dry_run=True)
    assert calls == [] and [c['config_name'] for c in plan['configs']] == ['orion', 'orion_at_sft_teacher']
    with pytest.raises(ValueError, match='token'): push_to_hub(run, 'me/orion', token=None)
    push_to_hub(run, 'me/orion', token='hf_t')
    assert calls == [('me/orion', 'orion', 'hf_t', 3), ('me/orion', 'orion_at_sft_teacher', 'hf_t', 3), ('me/orion', 'README.md')]


def test_cli_export(run, tmp_path, capsys):
    assert cli_export(run, tmp_path/'out', formats=['trl', 'llamafactory']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f'wrote trl: {tmp_path}/out/trl/orion.jsonl', f'wrote trl: {tmp_path}/out/trl/orion_at_sft_teacher.jsonl',
                     f'wrote llamafactory: {tmp_path}/out/llamafactory/orion.json',
                     f'wrote llamafactory: {tmp_path}/out/llamafactory/orion_at_sft_teacher.json',
                     f'wrote llamafactory: {tmp_path}/out/llamafactory/dataset_info.json']
    assert cli_export(tmp_path/'missing') == 2 and 'orion export: run folder not found' in capsys.readouterr().err


def test_orion_export_command(run, tmp_path, capsys):
    "`orion export` reaches cli_export with its options: a dry run lists the files and writes none."
    from orion_nb.cli import main
    assert main(['export', str(run), '--out', str(tmp_path/'out'), '--format', 'hf', '--recipes', 'orion', '--dry-run']) == 0
    out = capsys.readouterr().out
    assert f'{tmp_path}/out/hf/orion' in out and 'orion_at_sft_teacher' not in out and not (tmp_path/'out').exists()
    assert main(['export', str(run), '--out', str(tmp_path/'out'), '--format', 'trl', '--recipes', 'orion']) == 0
    assert (tmp_path/'out'/'trl'/'orion.jsonl').is_file() and not (tmp_path/'out'/'trl'/'orion_at_sft_teacher.jsonl').exists()
