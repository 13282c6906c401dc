"""The spend cap against a stand-in OpenAI-compatible server: every request sent is counted (from the server's usage where
it answers, from the request's bound where it does not), no request is sent that could pass the cap, and the ledger
beside the store survives reruns and kills."""
import json, os, signal, subprocess, sys, time
import pytest
from conftest import gen_env
from test_server import StandIn, chat, records

from orion_nb.generate import (SamplingParams, Spend, SpendCapReached, generate_resumable, ledger_path,
                               money, request_bound, usage)
from orion_nb.openai_client import OpenAIGenerator


@pytest.fixture
def slow_server():
    "A stand-in that takes 0.3 s per answer, so several requests are in flight when the cap is reached."
    s = StandIn(delay=0.3); yield s; s.stop()


@pytest.fixture
def stand_in_fast():
    "A stand-in that answers at once."
    s = StandIn(); yield s; s.stop()


def gen_of(url, **kw):
    return OpenAIGenerator('m', base_url=url, api_key_env='ORION_NO_KEY', **{'max_concurrency': 4, 'timeout': 5.0, 'max_retries': 3,
                                                                          'backoff': 0.01, 'max_backoff': 0.05, **kw})


def sent_to(server): return sum(server.hits.values())
def ledger(store): return json.loads(ledger_path(store).read_text())

SP = SamplingParams(max_new_tokens=5)   # the stand-in answers 5 completion tokens: at $1 a token, a reply costs its bound, $5
FIVE = Spend(price_input=0.0, price_output=1e6, cap=22.0)   # room for 4 requests ($20), not 5


@pytest.mark.timeout(120)
def test_in_flight_requests_cannot_pass_the_cap(slow_server, tmp_path):
    "With up to 8 requests in flight, a $22 cap lets 4 requests reach the server, no more; all 4 are stored and counted."
    store, prompts = tmp_path/'s.jsonl', [chat(f'question {i}') for i in range(12)]
    with pytest.raises(SpendCapReached, match=r'spent \$20\.00 .*cap of \$22\.00') as e:
        generate_resumable(gen_of(slow_server.url, max_concurrency=8), prompts, SP, store, progress=False, spend=FIVE)
    assert sent_to(slow_server) == 4, f'the server received {sent_to(slow_server)} requests against a cap that allows 4'
    assert len(records(store)) == 4                                             # each billed reply is stored
    led = ledger(store)
    assert (led['sent'], led['billed'], led['unanswered'], led['in_flight']) == (4, 4, 0, 0)
    assert '4 requests sent' in str(e.value) and '4 of 12 samples stored' in str(e.value)
    u = usage(records(store), FIVE, store)
    assert (u['requests'], u['sent'], u['stored'], u['billed'], u['spent'], u['cost']) == (4, 4, 4, 4, 20.0, 20.0)
    assert u['spent'] <= FIVE.cap


@pytest.mark.timeout(120)
def test_timed_out_attempt_is_counted_at_its_bound(stand_in_fast, tmp_path):
    "A reply slower than the client's timeout is retried: both attempts are sent and charged, the first at its bound."
    store, prompt = tmp_path/'s.jsonl', chat('slow-once')
    spend = Spend(price_input=2.0, price_output=3.0)
    generate_resumable(gen_of(stand_in_fast.url, timeout=0.5), [prompt], SP, store, progress=False, spend=spend)
    assert sent_to(stand_in_fast) == 2 and len(records(store)) == 1
    (bp, bc), led = request_bound(prompt, SP), ledger(store)
    assert (led['sent'], led['billed'], led['unanswered']) == (2, 1, 1)
    assert (led['prompt_tokens'], led['completion_tokens']) == (1, 5)           # the answer, from the server's usage
    assert (led['bound_prompt_tokens'], led['bound_completion_tokens']) == (bp, 5)   # the timed-out attempt, at its bound
    u = usage(records(store), spend, store)
    assert u['cost'] == pytest.approx((1 * 2.0 + 5 * 3.0) / 1e6)               # the stored record's usage
    assert u['spent'] == pytest.approx(((1 + bp) * 2.0 + 10 * 3.0) / 1e6)       # what was sent
    assert bp >= len('slow-once')                                                # the bound is at least the prompt's length


@pytest.mark.timeout(120)
def test_ledger_survives_reruns(stand_in_fast, tmp_path):
    "A rerun at the same cap sends nothing; one with a higher cap goes on counting from what was spent."
    store, prompts = tmp_path/'s.jsonl', [chat(f'question {i}') for i in range(6)]
    gen = gen_of(stand_in_fast.url, max_concurrency=1)
    with pytest.raises(SpendCapReached): generate_resumable(gen, prompts, SP, store, progress=False, spend=FIVE)
    n = sent_to(stand_in_fast)
    assert n == 4 and ledger(store)['sent'] == 4
    with pytest.raises(SpendCapReached): generate_resumable(gen, prompts, SP, store, progress=False, spend=FIVE)
    assert sent_to(stand_in_fast) == n                                          # no new request
    out = generate_resumable(gen, prompts, SP, store, progress=False, spend=Spend(0.0, 1e6, 100.0))
    assert len(out) == 6 and sent_to(stand_in_fast) == 6
    led = ledger(store)
    assert (led['sent'], led['billed']) == (6, 6)
    assert usage(records(store), Spend(0.0, 1e6), store)['spent'] == 30.0


KILLED = """
import sys
from orion_nb.generate import SamplingParams, Spend, generate_resumable
from orion_nb.openai_client import OpenAIGenerator
gen = OpenAIGenerator('m', base_url=sys.argv[1], api_key_env='ORION_NO_KEY', max_concurrency=4, timeout=60)
generate_resumable(gen, [[{'role': 'user', 'content': f'question {i}'}] for i in range(8)], SamplingParams(max_new_tokens=5),
                   sys.argv[2], progress=False, spend=Spend(0.0, 1e6, 22.0))
"""

@pytest.mark.timeout(180)
def test_requests_in_flight_at_a_kill_are_counted(tmp_path):
    "kill -9 with 4 requests in flight: the ledger has them at their bound, and a rerun at the same cap sends nothing."
    srv, store = StandIn(delay=30.0), tmp_path/'s.jsonl'
    try:
        p = subprocess.Popen([sys.executable, '-c', KILLED, srv.url, str(store)], env=gen_env(), start_new_session=True)
        t0 = time.time()
        while sent_to(srv) < 4 and time.time() - t0 < 60 and p.poll() is None: time.sleep(0.05)
        assert sent_to(srv) == 4, f'{sent_to(srv)} requests in flight'
        os.kill(p.pid, signal.SIGKILL); p.wait()
        srv.delay = 0.0
        u = usage([], FIVE, store)
        assert (u['sent'], u['billed'], u['stored'], u['spent']) == (4, 0, 0, 20.0)   # charged, none stored
        with pytest.raises(SpendCapReached): generate_resumable(gen_of(srv.url), [chat(f'question {i}') for i in range(8)], SP, store, progress=False, spend=FIVE)
        assert sent_to(srv) == 4
        assert usage([], FIVE, store)['unanswered'] == 4
    finally: srv.stop()


def test_money_small_amounts():
    "Small sums keep two significant digits; $1 and above, cents."
    assert [money(x) for x in (0, 0.004, 0.0058, 0.01, 0.123, 0.999, 1, 12, 1234.5)] == \
           ['$0', '$0.004', '$0.0058', '$0.01', '$0.12', '$1.00', '$1.00', '$12.00', '$1,234.50']
