"The checker CI runs after `make repro`: exact on accuracies, counts and intervals, a relative tolerance on losses."
import json, subprocess, sys
from pathlib import Path
from check_summary import differences, main

ROOT = Path(__file__).resolve().parents[1]
S = {'accuracy': {'world_test': {'orion': {'mean': 0.56, 'ci95_half_width': 0.0597, 'seeds': 3}}},
     'target_origins': {'base': {'refined': 204}}, 'stability': {'orion': {'final_loss': 0.0823336319377025}},
     'target_coherence': {'orion': {'student_nll_per_token': 1.281651372457418, 'steps_hold': 0.94}}}

def changed(path, value):
    s = json.loads(json.dumps(S)); d = s
    for k in path[:-1]: d = d[k]
    d[path[-1]] = value; return s

def test_equal_summaries_match():
    assert differences(S, S) == [] and differences({'x': float('nan')}, {'x': float('nan')}) == []   # NaN: nothing measured, both times
    assert differences({'x': float('nan')}, {'x': 0.5}) == ['.x: committed 0.5, now nan']

def test_accuracy_count_and_interval_are_exact():
    assert differences(changed(['accuracy', 'world_test', 'orion', 'mean'], 0.56 + 1e-12), S) == [
        f'.accuracy.world_test.orion.mean: committed 0.56, now {0.56 + 1e-12!r}']
    assert differences(changed(['target_origins', 'base', 'refined'], 205), S) == ['.target_origins.base.refined: committed 204, now 205']
    assert differences(changed(['accuracy', 'world_test', 'orion', 'ci95_half_width'], None), S)
    assert differences(changed(['target_coherence', 'orion', 'steps_hold'], 0.94 + 1e-9), S)

def test_losses_within_relative_tolerance():
    assert differences(changed(['stability', 'orion', 'final_loss'], 0.0823336319377025 * (1 + 5e-7)), S) == []
    assert differences(changed(['target_coherence', 'orion', 'student_nll_per_token'], 1.281651372457418 * (1 + 5e-7)), S) == []
    assert differences(changed(['stability', 'orion', 'final_loss'], 0.0823336319377025 + 5e-7), S) == []     # within atol
    d = differences(changed(['stability', 'orion', 'final_loss'], 0.0823336319377025 * (1 + 5e-5)), S)
    assert len(d) == 1 and 'beyond rtol' in d[0] and d[0].startswith('.stability.orion.final_loss')
    assert differences(changed(['stability', 'orion', 'final_loss'], 0.0823336319377025 * (1 + 5e-5)), S, atol=0.0, rtol=1e-4) == []

def test_missing_and_new_keys_are_named():
    s = json.loads(json.dumps(S)); del s['accuracy']['world_test']['orion']['seeds']; s['extra'] = 1
    assert sorted(differences(s, S)) == ['.accuracy.world_test.orion.seeds: committed 3, now missing', '.extra: not committed, now 1']

def test_cli_exit_codes(tmp_path, capsys):
    (tmp_path/'old.json').write_text(json.dumps(S)); (tmp_path/'new.json').write_text(json.dumps(changed(['target_origins', 'base', 'refined'], 1)))
    assert main([str(tmp_path/'old.json'), '--against', str(tmp_path/'old.json')]) == 0
    assert 'summary_matches: True' in capsys.readouterr().out
    assert main([str(tmp_path/'new.json'), '--against', str(tmp_path/'old.json')]) == 1
    out = capsys.readouterr().out
    assert '.target_origins.base.refined: committed 204, now 1' in out and 'summary_matches: False' in out

def test_committed_summary_matches_itself(tmp_path, capsys):
    "The summary committed at HEAD, read as CI's check reads it, checks against itself: no spurious difference (NaN cells included)."
    from check_summary import committed
    f = tmp_path/'summary.json'; f.write_text(json.dumps(committed('reports/tiny/summary.json')))
    assert main([str(f), '--against', str(f)]) == 0 and 'summary_matches: True' in capsys.readouterr().out
