"""``edgevlm serve`` driven by the official ``openai`` Python client on loopback, as users' programs drive it:
completions and chat completions (streaming and not, usage chunks, sampling fields, stop), refusals as the
client's typed errors, the API key, /v1/models, hot add/remove of adapters, and multi-turn chat rendered by the
base model's own chat template (compared with Jinja's rendering, not with the server's renderer)."""

from __future__ import annotations

import http.client
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

openai = pytest.importorskip("openai", reason="the serve tests need the openai client (pip install 'edgevlm[dev]')")
pytest.importorskip("uvicorn", reason="edgevlm serve needs uvicorn + starlette (pip install 'edgevlm[serve]')")

from test_mixed_batches import TEXTS  # noqa: E402

from edgevlm.apps.serve import BackgroundServer  # noqa: E402

KEY = "sk-test-edgevlm"
TIMEOUT = 60
JINJA = (  # a chat template with a system role and a default system message, like SmolLM2's
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|endoftext|>system: be brief\n{% endif %}"
    "<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def bundle(mixed_bundles):
    return mixed_bundles["gpt2"]("fp32")


@pytest.fixture(scope="module")
def rt(bundle):
    from edgevlm.runtime import Runtime

    return Runtime.load(bundle, threads=1)


@pytest.fixture(scope="module")
def server(bundle):
    with BackgroundServer(bundle, threads=1, api_key=KEY, max_batch=4, max_queue=8) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def chat_bundle(tmp_path_factory, tiny_llama_dir):
    from edgevlm.export import export_bundle

    src = tmp_path_factory.mktemp("serve-chat") / "model"
    shutil.copytree(tiny_llama_dir, src)
    (src / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "chat_template": JINJA}))
    return export_bundle(str(src), [], "fp32", out=src.parent / "bundle", progress=False)


def test_completions_whole_and_streamed(client, rt):
    got = client.completions.create(model="nlg", prompt=TEXTS[0], max_tokens=9)
    want = rt.generate(TEXTS[0], task="nlg", max_new_tokens=9)
    assert got.choices[0].text == want and got.object == "text_completion"
    assert got.usage.prompt_tokens == len(rt.row(TEXTS[0], "nlg", max_new_tokens=9).prompt)
    chunks = list(client.completions.create(model="nlg", prompt=TEXTS[0], max_tokens=9, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == got.choices[0].finish_reason


def test_chat_stream_with_usage_and_sampling_fields(client, rt):
    msgs = [{"role": "user", "content": "the cat sat"}]
    kw = dict(model="base", messages=msgs, max_completion_tokens=10, temperature=0.8, top_p=0.9, seed=7)
    whole = client.chat.completions.create(**kw, extra_body={"top_k": 20})
    want = rt.generate("the cat sat", max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9, top_k=20, seed=7)
    assert whole.choices[0].message.content == want and whole.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        **kw, extra_body={"top_k": 20}, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == want
    other = client.chat.completions.create(**{**kw, "seed": 8}, extra_body={"top_k": 20})
    assert other.choices[0].message.content == rt.generate(
        "the cat sat", max_new_tokens=10, do_sample=True, temperature=0.8, top_p=0.9, top_k=20, seed=8
    )


def test_stop_and_max_tokens(client, rt):
    full = rt.generate(TEXTS[3], max_new_tokens=20)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    got = client.completions.create(model="base", prompt=TEXTS[3], max_tokens=20, stop=[stop])
    assert got.choices[0].text == full[: full.index(stop)] and got.choices[0].finish_reason == "stop"
    got = client.chat.completions.create(model="base", messages=[{"role": "user", "content": TEXTS[3]}], max_tokens=3)
    assert got.usage.completion_tokens == 3 and got.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
        ({"extra_body": {"tools_x": 1}}, "tools_x"),
        ({"temperature": 3.0}, "temperature"),
    ],
)
def test_refusals_are_typed_errors_naming_the_field(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="qa", messages=[{"role": "user", "content": "x"}], **kwargs)
    assert e.value.status_code == 400 and e.value.param == param and param in e.value.message
    assert set(e.value.body) == {"message", "type", "param", "code"} and e.value.type == "invalid_request_error"


def test_api_key_guards_everything_but_health(server, rt):
    for key in ("wrong", ""):
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key=key or "x", max_retries=0, timeout=TIMEOUT)
        with pytest.raises(openai.AuthenticationError) as e:
            bad.models.list()
        assert e.value.code == "invalid_api_key"
    assert _call(server.url, "GET", "/health", key=None)[0] == 200
    assert _call(server.url, "GET", "/v1/models", key=None)[0] == 401
    assert _call(server.url, "POST", "/v1/adapters", {"path": "x"}, key=None)[0] == 401


def test_models_say_where_they_belong(client, rt):
    models = {m.id: m for m in client.models.list()}
    assert list(models) == ["base", *rt.tasks]
    assert models["base"].owned_by == "edgevlm" and models["base"].model_extra["parent"] is None
    assert models["base"].model_extra["root"] == rt.manifest.backbone.source
    assert all(models[t].model_extra["parent"] == "base" for t in rt.tasks)


def _call(url: str, method: str, path: str, body=None, key: str | None = KEY) -> tuple[int, dict]:
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    out = r.status, json.loads(r.read() or b"{}")
    c.close()
    return out


def test_adapters_are_removed_and_added_over_http(server, client, bundle, rt):
    want = rt.generate(TEXTS[0], task="nlg", max_new_tokens=8)
    assert _call(server.url, "DELETE", "/v1/adapters/nlg") == (200, {"id": "nlg", "object": "model", "deleted": True})
    assert "nlg" not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nlg", prompt=TEXTS[0], max_tokens=8)
    assert _call(server.url, "DELETE", "/v1/adapters/nlg")[0] == 404
    path = str(bundle / "adapters" / "nlg.onnx_adapter")
    status, entry = _call(server.url, "POST", "/v1/adapters", {"path": path})
    assert status == 200 and (entry["id"], entry["parent"]) == ("nlg", "base")
    assert client.completions.create(model="nlg", prompt=TEXTS[0], max_tokens=8).choices[0].text == want
    status, err = _call(server.url, "POST", "/v1/adapters", {"path": path})
    assert status == 409 and "already loaded" in err["error"]["message"]
    foreign = {**rt.tasks["nlg"].entry.to_json(), "name": "nlg2", "backbone_fingerprint": "0" * 64}
    status, err = _call(server.url, "POST", "/v1/adapters", {"path": path, "entry": foreign})
    assert status == 400 and "fingerprint" in err["error"]["message"]
    status, err = _call(server.url, "POST", "/v1/adapters", {"path": str(bundle / "nope.onnx_adapter")})
    assert status == 400 and "nope.onnx_adapter" in err["error"]["message"]


def test_a_task_with_requests_in_flight_is_not_removed(server, client):
    sched = server.service.scheduler
    with ThreadPoolExecutor(1) as pool:
        with sched.hold():
            pending = pool.submit(client.completions.create, model="qa", prompt=TEXTS[2], max_tokens=4)
            deadline = time.monotonic() + TIMEOUT
            while sched.load != (0, 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            status, err = _call(server.url, "DELETE", "/v1/adapters/qa")
            assert status == 409 and "decoding or waiting" in err["error"]["message"]
        assert pending.result(TIMEOUT).choices[0].text is not None
    assert "qa" in server.service.rt.tasks


def test_adapter_management_is_off_without_a_key(bundle):
    with BackgroundServer(bundle, threads=1) as s:
        status, err = _call(s.url, "DELETE", "/v1/adapters/nlg", key=None)
        assert status == 403 and "--api-key" in err["error"]["message"]
        assert _call(s.url, "POST", "/v1/adapters", {"path": "x"}, key=None)[0] == 403
        assert "nlg" in s.service.rt.tasks


def _jinja(messages: list[dict]) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(JINJA).render(messages=messages, add_generation_prompt=True)


def test_a_conversation_is_rendered_by_the_models_chat_template(chat_bundle):
    from edgevlm.runtime import Runtime

    rt = Runtime.load(chat_bundle, threads=1)
    conversations = [
        [
            {"role": "system", "content": "you answer in one word"},
            {"role": "user", "content": "what is a cat"},
            {"role": "assistant", "content": "animal"},
            {"role": "user", "content": "and a dog"},
        ],
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "ok"},
        ],
    ]
    with BackgroundServer(chat_bundle, threads=1) as s:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=TIMEOUT)
        for msgs in conversations:
            prompt = _jinja(msgs)
            assert prompt.count("<|endoftext|>") == len(msgs) + 1 + (msgs[0]["role"] != "system")
            got = c.chat.completions.create(model="base", messages=msgs, max_tokens=6)
            assert got.choices[0].message.content == rt.generate(prompt, max_new_tokens=6)
            assert got.usage.prompt_tokens == len(rt.row(prompt, max_new_tokens=6).prompt)
        one = c.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=6)
        assert one.choices[0].message.content == rt.generate("hi", chat=True, max_new_tokens=6)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(
                model="base", messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]
            )
        assert "messages[1].role: expected 'assistant', got 'system'" in e.value.message
