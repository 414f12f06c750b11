"""Property tests of ``edgevlm serve``'s request reader (issue 29), like the file readers' fuzz: any body, valid
requests with fields overwritten by arbitrary JSON, or arbitrary bytes, is answered 200 or a 4xx in OpenAI's
error shape on one line, never a 5xx; the server keeps answering. Bounded (max_examples, derandomized, no example
database) so the default suite stays fast and reproducible."""

from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("uvicorn", reason="edgevlm serve needs uvicorn + starlette (pip install 'edgevlm[serve]')")

from edgevlm.apps.serve import BackgroundServer  # noqa: E402
from edgevlm.apps.serve.protocol import FIELDS  # noqa: E402

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
KEYS = st.sampled_from(sorted(FIELDS[False] | FIELDS[True] | {"role", "content"})) | st.text(max_size=8)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "developer", "tool", 3]), "content": JSON}
    ),
    max_size=4,
)
VALID = {
    False: {"model": "nlg", "prompt": "name[Aromi]", "max_tokens": 2},
    True: {"model": "dialogue", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
}
STATUSES = {200, 400, 404, 413}


@pytest.fixture(scope="module")
def server(mixed_bundles):
    with BackgroundServer(mixed_bundles["gpt2"]("fp32"), threads=1, max_batch=4, max_queue=8) as s:
        yield s


def _post(url: str, path: str, data: bytes) -> tuple[int, str, str]:
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.status, r.getheader("content-type", ""), r.read().decode("utf-8")
    c.close()
    return out


def _check(status: int, kind: str, text: str) -> None:
    assert status in STATUSES, (status, text[:300])
    if status == 200:
        if kind.startswith("text/event-stream"):
            assert text.rstrip().endswith("data: [DONE]")
        else:
            assert json.loads(text)["choices"][0]["finish_reason"] in ("stop", "length")
        return
    error = json.loads(text)["error"]
    assert set(error) == {"message", "type", "param", "code"} and "\n" not in text.strip()
    assert isinstance(error["message"], str) and 0 < len(error["message"]) < 400


@FUZZ
@given(chat=st.booleans(), overrides=st.dictionaries(KEYS, JSON, max_size=3), messages=MESSAGES | st.none())
def test_fields_overwritten_with_any_json(server, chat, overrides, messages):
    body = {**VALID[chat], **overrides}
    if chat and messages is not None:
        body["messages"] = messages
    if isinstance(body.get("max_tokens"), int) and not isinstance(body["max_tokens"], bool):
        body["max_tokens"] = min(body["max_tokens"], 4)  # bounded work; the refusals of large values are tested
    path = "/v1/chat/completions" if chat else "/v1/completions"
    _check(*_post(server.url, path, json.dumps(body).encode()))


@FUZZ
@given(chat=st.booleans(), data=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_bytes(server, chat, data):
    _check(*_post(server.url, "/v1/chat/completions" if chat else "/v1/completions", data))
