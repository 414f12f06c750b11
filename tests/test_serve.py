"""``edgevlm serve`` on loopback, driven by a real HTTP client (http.client, one connection per request).

Every wait is bounded: requests time out after TIMEOUT seconds, thread pools are joined with that limit. Nothing
here compares wall-clock times: concurrency is made deterministic with ``Scheduler.hold()`` (no decode step starts
while held) and checked by the scheduler's counters.
"""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn", reason="edgevlm serve needs uvicorn + starlette (pip install 'edgevlm[serve]')")

from test_mixed_batches import TASKS, TEXTS  # noqa: E402

from edgevlm.apps.serve import BackgroundServer  # noqa: E402
from edgevlm.apps.serve.protocol import PLAIN_MODEL  # noqa: E402

TIMEOUT = 60


def _call(url: str, path: str, body=None, method: str = "POST", headers=None) -> tuple[int, dict, str]:
    """(status, headers, body text) of one request."""
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    out = r.status, dict(r.getheaders()), r.read().decode()
    c.close()
    return out


def _events(text: str) -> list[dict]:
    lines = [ln[len("data: ") :] for ln in text.split("\n\n") if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(ln) for ln in lines[:-1]]


def _model(task) -> str:
    return PLAIN_MODEL if task is None else task


CHAT = {  # each TEXTS entry as chat messages: a task's context is the system message, its turns the roles
    TEXTS[1]: [{"role": "system", "content": "i like cats ."}, {"role": "user", "content": "do you have pets ?"}],
    TEXTS[2]: [
        {"role": "system", "content": "story : tom has a dog ."},
        {"role": "user", "content": "what does tom have ?"},
    ],
}


def _messages(text: str) -> list[dict]:
    return CHAT.get(text, [{"role": "user", "content": text}])


def _until(condition, what: str) -> None:
    """Wait (bounded by TIMEOUT) for ``condition()``: an event, not a time threshold."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def bundle(mixed_bundles):
    return mixed_bundles["gpt2"]("fp32")


@pytest.fixture(scope="module")
def rt(bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(bundle, threads=1)


@pytest.fixture(scope="module")
def server(bundle):
    with BackgroundServer(bundle, threads=1, max_batch=8, max_queue=32) as s:
        yield s


def test_32_concurrent_mixed_requests_return_the_serial_outputs(server, rt):
    jobs = [(TEXTS[k % len(TEXTS)], TASKS[k % len(TASKS)], 6 + k % 11) for k in range(32)]
    want = [rt.generate(s, task=t, max_new_tokens=n) for s, t, n in jobs]
    bodies = [{"model": _model(t), "prompt": s, "max_tokens": n} for s, t, n in jobs]
    sched = server.service.scheduler
    steps, peak = sched.steps, sched.peak_rows
    sched.peak_rows = 0
    with ThreadPoolExecutor(32) as pool:
        with sched.hold():  # every request queues before the first step: they must share steps
            futures = [pool.submit(_call, server.url, "/v1/completions", b) for b in bodies]
            _until(lambda: sched.load == (0, 32), "32 queued requests")
        results = [f.result(TIMEOUT) for f in futures]
    assert [r[0] for r in results] == [200] * 32
    got = [json.loads(r[2])["choices"][0]["text"] for r in results]
    assert got == want
    assert sched.peak_rows == 8  # max_batch rows decoded together
    assert sched.steps - steps < sum(n for *_, n in jobs) // 4
    sched.peak_rows = max(peak, sched.peak_rows)


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_yields_the_non_streaming_text(server, chat):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    for text, task in list(zip(TEXTS, TASKS))[:4]:
        body = {"model": _model(task), "max_tokens": 12, "temperature": 0.7, "seed": 3}
        body.update({"messages": _messages(text)} if chat else {"prompt": text})
        status, _, whole = _call(server.url, path, body)
        assert status == 200
        choice = json.loads(whole)["choices"][0]
        want = choice["message"]["content"] if chat else choice["text"]
        status, headers, stream = _call(server.url, path, {**body, "stream": True})
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        events = _events(stream)
        key = (lambda c: c["delta"].get("content", "")) if chat else (lambda c: c["text"])
        assert "".join(key(e["choices"][0]) for e in events) == want
        assert events[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]
        assert all("usage" not in e for e in events)  # no usage unless stream_options.include_usage
        status, _, stream = _call(server.url, path, {**body, "stream": True, "stream_options": {"include_usage": True}})
        events = _events(stream)
        assert events[-1]["choices"] == [] and events[-1]["usage"] == json.loads(whole)["usage"]
        assert all(e["usage"] is None for e in events[:-1])
        assert "".join(key(e["choices"][0]) for e in events[:-1]) == want


def test_min_tokens_suppresses_eos(server, rt):
    body = {"model": PLAIN_MODEL, "prompt": "name[Aromi] =>", "max_tokens": 40}
    short = json.loads(_call(server.url, "/v1/completions", body)[2])
    assert short["usage"]["completion_tokens"] < 40  # the backbone ends this line early by itself
    full = json.loads(_call(server.url, "/v1/completions", {**body, "min_tokens": 40})[2])
    assert full["usage"]["completion_tokens"] == 40 and full["choices"][0]["finish_reason"] == "length"
    assert full["choices"][0]["text"] == rt.generate("name[Aromi] =>", max_new_tokens=40, min_new_tokens=40)


def test_models_and_health(server, rt):
    status, _, text = _call(server.url, "/v1/models", method="GET")
    assert status == 200
    data = json.loads(text)["data"]
    assert [m["id"] for m in data] == [PLAIN_MODEL, *rt.tasks]
    assert all(m["owned_by"] == "edgevlm" and m["object"] == "model" for m in data)
    assert data[0]["parent"] is None and data[0]["root"] == rt.manifest.backbone.source
    assert [(m["parent"], m["root"]) for m in data[1:]] == [(PLAIN_MODEL, f"{t}.onnx_adapter") for t in rt.tasks]
    status, _, text = _call(server.url, "/health", method="GET")
    assert status == 200 and json.loads(text)["status"] == "ok"


BAD = [
    ({"model": "nope", "prompt": "x"}, 404, "model 'nope' does not exist"),
    ("{not json", 400, "not valid JSON"),
    ("[1, 2]", 400, "must be a JSON object"),
    ({"model": "nlg", "prompt": "x", "max_tokens": 10**6}, 400, "max_tokens=1000000 is beyond the context"),
    ({"model": "nlg", "prompt": "x", "max_tokens": 0}, 400, "max_tokens must be an integer >= 1"),
    ({"model": "nlg", "prompt": "x", "temperature": -0.5}, 400, "temperature must be a number"),
    ({"model": "nlg", "prompt": "x", "top_p": 0}, 400, "top_p must be a number"),
    ({"model": "nlg", "prompt": "x", "seed": -1}, 400, "seed must be an integer >= 0"),
    ({"model": "nlg", "prompt": "x", "stop": [""]}, 400, "stop must be"),
    ({"model": "nlg", "prompt": "x", "stream": "yes"}, 400, "stream must be true or false"),
    ({"model": "nlg", "prompt": "   "}, 400, "prompt must be a non-empty string"),
    ({"model": "nlg", "prompt": "x", "n": 2}, 400, "n=2 is not supported"),
    ({"model": "nlg", "prompt": "x", "logprobs": 2}, 400, "logprobs=2 is not supported"),
    ({"model": "nlg", "prompt": "x", "echo": True}, 400, "echo=True is not supported"),
    ({"model": "nlg", "prompt": "x", "best_of": 3}, 400, "best_of=3 is not supported"),
    ({"model": "nlg", "prompt": "x", "suffix": "end"}, 400, "suffix='end' is not supported"),
    ({"model": "nlg", "prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty=0.5 is not supported"),
    ({"model": "nlg", "prompt": "x", "tools": []}, 400, "'tools' is not a supported field"),
    ({"model": "nlg", "prompt": "x", "top_k": -1}, 400, "top_k must be an integer >= 0"),
    ({"model": "nlg", "prompt": "x", "seed": 2**70}, 400, "seed must be below 2**63"),
    ({"model": "nlg", "prompt": "x", "stream_options": {"include_usage": True}}, 400, "only allowed with stream"),
    ({"model": "nlg", "prompt": "x", "stream": True, "stream_options": {"x": 1}}, 400, "stream_options must be"),
    ({"model": "nlg", "prompt": "x", "stop": ["ab" * 500] * 5}, 400, "... (5020 characters)"),
    ({"model": "m" * 5000, "prompt": "x"}, 404, "... (5002 characters)"),
    ('{"model": "nlg", "prompt": "x", "temperature": NaN}', 400, "NaN is not valid JSON"),
    ("[" * 200_000 + "]" * 200_000, 400, "nested 200000 deep, over the limit of 32"),
    ('{"a": ' * 100 + "1" + "}" * 100, 400, "nested 100 deep"),
    (b'{"model": "nlg", "prompt": "\xff\xfe"}'.decode("unicode_escape").encode("latin-1"), 400, "not valid JSON"),
    ('{"model": "nlg", "prompt": "x", "seed": ' + "9" * 5000 + "}", 400, "not valid JSON"),
    ({"model": "nlg", "prompt": "x", "max_tokens": 3, "min_tokens": 4}, 400, "min_tokens=4 is larger"),
    ("x" * (2 << 20), 413, "over the limit"),
]


@pytest.mark.parametrize("body, status, message", BAD)
def test_bad_requests_get_one_line_errors_and_the_server_keeps_serving(server, body, status, message):
    got, _, text = _call(server.url, "/v1/completions", body)
    assert got == status
    error = json.loads(text)["error"]
    assert "\n" not in text.strip() and message in error["message"], error
    assert set(error) == {"message", "type", "param", "code"} and len(error["message"]) < 400
    ok, _, _ = _call(server.url, "/v1/completions", {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 2})
    assert ok == 200


def test_chat_turns_map_onto_the_task_format(server, rt):
    history = [
        {"role": "system", "content": "i like cats ."},
        {"role": "user", "content": "hi , how are you ?"},
        {"role": "assistant", "content": "i am fine ."},
        {"role": "user", "content": "do you have pets ?"},
    ]
    text = "i like cats . <user> hi , how are you ? <system> i am fine . <user> do you have pets ?"
    body = {"model": "dialogue", "messages": history, "max_tokens": 10}
    got = json.loads(_call(server.url, "/v1/chat/completions", body)[2])
    assert got["choices"][0]["message"]["content"] == rt.generate(text, task="dialogue", max_new_tokens=10)
    assert got["usage"]["prompt_tokens"] == len(rt.row(text, "dialogue", max_new_tokens=10).prompt)
    qa = [{"role": "developer", "content": "story : tom has a dog ."}, {"role": "user", "content": "what ?"}]
    got = json.loads(_call(server.url, "/v1/chat/completions", {"model": "qa", "messages": qa, "max_tokens": 6})[2])
    want = rt.generate("story : tom has a dog . <question> what ?", task="qa", max_new_tokens=6)
    assert got["choices"][0]["message"]["content"] == want


BAD_CHAT = [
    ({"model": "qa", "messages": []}, "messages must be a non-empty list"),
    ({"model": "qa", "messages": [{"role": "system", "content": "x"}]}, "must end with a user message"),
    ({"model": "nlg", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
     "task 'nlg' takes one user message (its input), got roles ['system', 'user']"),
    ({"model": "base", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                    {"role": "user", "content": "c"}]}, "the bundle has no chat template"),
    ({"model": "dialogue", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "messages[1].role: expected 'assistant', got 'user'"),
    ({"model": "dialogue", "messages": [{"role": "user", "content": "hi <system> there"}]},
     "messages[0].content contains the task token '<system>'"),
    ({"model": "qa", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role must be"),
    ({"model": "qa", "messages": [{"role": "user", "content": "x", "name": "bob"}]}, "messages[0].name is not supp"),
    ({"model": "qa", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
    ({"model": "qa", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "max_completion_tokens": 5},
     "max_tokens=4 and max_completion_tokens=5 disagree"),
    ({"model": "qa", "messages": [{"role": "user", "content": "x"}], "echo": True}, "'echo' is not a supported"),
    ({"model": "dialogue", "max_tokens": 8, "messages": [{"role": "system", "content": "i like cats . " * 400},
                                                          {"role": "user", "content": "hi"}]},
     "messages do not fit the context"),
]  # fmt: skip


@pytest.mark.parametrize("body, message", BAD_CHAT)
def test_bad_chat_requests_name_the_message(server, body, message):
    status, _, text = _call(server.url, "/v1/chat/completions", body)
    assert status == 400 and message in json.loads(text)["error"]["message"], text


def test_paths(server):
    assert _call(server.url, "/v1/nothing", {})[0] == 404
    status, _, text = _call(server.url, "/v1/completions", method="GET")
    assert status == 405 and json.loads(text)["error"]["type"] == "invalid_request_error"
    status, _, text = _call(server.url, "/v1/models/", method="GET")  # a trailing slash: the same route, no 307
    assert status == 200 and json.loads(text)["data"][0]["id"] == PLAIN_MODEL
    body = {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 3}
    slash, plain = _call(server.url, "/v1/completions/", body), _call(server.url, "/v1/completions", body)
    assert slash[0] == plain[0] == 200
    assert json.loads(slash[2])["choices"] == json.loads(plain[2])["choices"]


def test_overload_is_refused_at_once_and_the_server_recovers(bundle, rt):
    body = {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 20}
    want = rt.generate(TEXTS[0], task="nlg", max_new_tokens=20)
    with BackgroundServer(bundle, threads=1, max_batch=1, max_queue=1) as s, ThreadPoolExecutor(2) as pool:
        sched = s.service.scheduler
        with sched.hold():  # nothing decodes: the two slots stay taken while the rest arrive
            taken = [pool.submit(_call, s.url, "/v1/completions", body) for _ in range(2)]
            _until(lambda: sched.load == (0, 2), "both slots taken")
            busy = [_call(s.url, "/v1/completions", body) for _ in range(5)]  # answered while held: at once
            assert sched.steps == 0 and sched.load == (0, 2)
        assert all(r[0] == 503 and r[1].get("retry-after") == "1" for r in busy)
        assert all("busy" in json.loads(r[2])["error"]["message"] for r in busy)
        assert json.loads(busy[0][2])["error"]["code"] == "overloaded"
        done = [f.result(TIMEOUT) for f in taken]
        assert [json.loads(r[2])["choices"][0]["text"] for r in done] == [want, want]
        assert _call(s.url, "/v1/completions", body)[0] == 200


def test_a_client_that_goes_away_frees_its_row(server):
    host, port = server.url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    body = {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 400, "min_tokens": 400, "stream": True}
    sched = server.service.scheduler
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200 and r.readline().startswith(b"data: {")
    with sched.hold():  # no step runs until the server has seen the client go
        steps, cancels = sched.steps, sched.cancels
        c.close()  # gone after the first token
        _until(lambda: sched.cancels > cancels, "the server to cancel the row")
    _until(lambda: sched.load == (0, 0), "the cancelled row to leave")
    assert sched.steps == steps  # cancelled, not decoded one step further
    assert _call(server.url, "/v1/completions", {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 2})[0] == 200


def test_serve_cli_refuses_bad_arguments(tmp_path, capsys, bundle):
    import socket

    from edgevlm.apps.cli import main

    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert main(["serve", str(bundle), "--provider", "NoSuchExecutionProvider"]) == 2
    assert main(["serve", str(bundle), "--api-key", " "]) == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(bundle), "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert out == ""  # nothing announced
    assert len(err) == 4 and all(e.startswith("edgevlm serve: error: ") for e in err), err
    assert "--port must be in [0, 65535], got 70000" in err[0]
    assert "'NoSuchExecutionProvider' is not in this ONNX Runtime build; available: [" in err[1]
    assert "CPUExecutionProvider" in err[1] and "--api-key is empty" in err[2]
    assert f"--port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)" in err[3]
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgevlm serve: error: ") and len(err) == 2  # after one "loading" line
