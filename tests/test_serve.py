"""``edgevlm serve`` on loopback, driven by a real HTTP client (http.client, one connection per request).

Every wait is bounded: requests time out after TIMEOUT seconds, thread pools are joined with that limit.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn", reason="edgevlm serve needs uvicorn + starlette (pip install 'edgevlm[serve]')")

from test_mixed_batches import TASKS, TEXTS  # noqa: E402

from edgevlm.apps.serve import BackgroundServer  # noqa: E402
from edgevlm.apps.serve.protocol import PLAIN_MODEL  # noqa: E402

TIMEOUT = 60


def _call(url: str, path: str, body=None, method: str = "POST") -> tuple[int, dict, str]:
    """(status, headers, body text) of one request."""
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
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
    steps = server.service.scheduler.steps
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda b: _call(server.url, "/v1/completions", b), bodies, timeout=TIMEOUT))
    assert [r[0] for r in results] == [200] * 32
    got = [json.loads(r[2])["choices"][0]["text"] for r in results]
    assert got == want
    assert server.service.scheduler.peak_rows >= 4  # requests really shared decode steps
    assert server.service.scheduler.steps - steps < sum(n for *_, n in jobs)


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_yields_the_non_streaming_text(server, chat):
    path = "/v1/chat/completions" if chat else "/v1/completions"
    for text, task in list(zip(TEXTS, TASKS))[:4]:
        body = {"model": _model(task), "max_tokens": 12, "temperature": 0.7, "seed": 3}
        body.update({"messages": [{"role": "user", "content": text}]} if chat else {"prompt": text})
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
        assert events[-1]["usage"] == json.loads(whole)["usage"]


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
    assert [m["id"] for m in json.loads(text)["data"]] == [PLAIN_MODEL, *rt.tasks]
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
    ({"model": "nlg", "prompt": "x", "n": 2}, 400, "n must be 1"),
    ({"model": "nlg", "prompt": "x", "max_tokens": 3, "min_tokens": 4}, 400, "min_tokens=4 is larger"),
    ("x" * (2 << 20), 413, "over the limit"),
]


@pytest.mark.parametrize("body, status, message", BAD)
def test_bad_requests_get_one_line_errors_and_the_server_keeps_serving(server, body, status, message):
    got, _, text = _call(server.url, "/v1/completions", body)
    assert got == status
    assert "\n" not in text.strip() and message in json.loads(text)["error"]["message"]
    ok, _, _ = _call(server.url, "/v1/completions", {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 2})
    assert ok == 200


def test_bad_chat_requests_and_paths(server):
    for body in ({"model": "qa", "messages": []}, {"model": "qa", "messages": [{"role": "system", "content": "x"}]}):
        status, _, text = _call(server.url, "/v1/chat/completions", body)
        assert status == 400 and "messages" in json.loads(text)["error"]["message"]
    assert _call(server.url, "/v1/nothing", {})[0] == 404
    assert _call(server.url, "/v1/completions", method="GET")[0] == 405


def test_overload_is_refused_at_once_and_the_server_recovers(bundle, rt):
    body = {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 200}
    want = rt.generate(TEXTS[0], task="nlg", max_new_tokens=200)
    with BackgroundServer(bundle, threads=1, max_batch=1, max_queue=1) as s:
        start = threading.Barrier(12)

        def one(_):
            start.wait(TIMEOUT)
            t = time.perf_counter()
            status, headers, text = _call(s.url, "/v1/completions", body)
            return status, headers, text, time.perf_counter() - t

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(12), timeout=TIMEOUT))
        busy = [r for r in results if r[0] == 503]
        done = [r for r in results if r[0] == 200]
        assert busy and len(busy) + len(done) == 12
        assert all(r[1].get("retry-after") == "1" and "busy" in json.loads(r[2])["error"]["message"] for r in busy)
        assert max(r[3] for r in busy) < max(r[3] for r in done)  # refused without waiting for a slot
        assert all(json.loads(r[2])["choices"][0]["text"] == want for r in done)
        assert _call(s.url, "/v1/completions", body)[0] == 200


def test_a_client_that_goes_away_frees_its_row(server):
    host, port = server.url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    body = {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 400, "min_tokens": 400, "stream": True}
    steps = server.service.scheduler.steps
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200 and r.readline().startswith(b"data: {")
    c.close()  # gone after the first token
    deadline = time.monotonic() + TIMEOUT
    while server.service.scheduler.load != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.service.scheduler.load == (0, 0)
    ran = server.service.scheduler.steps - steps
    assert ran < 399, ran  # cancelled, not decoded to the end
    assert _call(server.url, "/v1/completions", {"model": "nlg", "prompt": TEXTS[0], "max_tokens": 2})[0] == 200


def test_serve_cli_refuses_bad_arguments(tmp_path, capsys):
    from edgevlm.apps.cli import main

    assert main(["serve", str(tmp_path / "missing"), "--port", "1"]) == 2
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("edgevlm serve: error: ") for e in err)
    assert "--port must be in [0, 65535]" in err[1]
