"""Property tests of every reader of user-supplied files (issue 18): a manifest, a task sidecar, adapter.json,
adapter.safetensors and an ONNX Runtime adapter file either load correctly or raise the project's typed
error (BundleError / ConfigError) -- never another exception. Bounded (max_examples, derandomized, no
example database) so the default suite stays fast and reproducible."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevlm.core import bundle
from edgevlm.core.errors import BundleError, ConfigError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths(obj, prefix=()) -> list[tuple]:
    """Every key path into the JSON value ``obj``."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def mutate(obj, data, draw_value=JSON):
    """A deep copy of ``obj`` with one path replaced by a random JSON value, deleted, or a key added."""
    obj = copy.deepcopy(obj)
    target = data.draw(st.sampled_from(paths(obj)[1:]))
    parent = obj
    for k in target[:-1]:
        parent = parent[k]
    how = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if how == "delete" and isinstance(parent, dict):
        del parent[target[-1]]
    elif how == "add" and isinstance(parent, dict):
        parent[data.draw(st.text(max_size=12))] = data.draw(draw_value)
    else:
        parent[target[-1]] = data.draw(draw_value)
    return obj


@pytest.fixture(scope="module")
def good(tiny_bundle) -> dict:
    """What a real export writes: manifest, one task as a sidecar, adapter.json, the files."""
    root = tiny_bundle("fp32")
    m = json.loads((root / bundle.MANIFEST).read_text())
    return {"root": root, "manifest": m, "sidecar": {"name": "nlg2", **m["tasks"]["nlg"]}}


@FUZZ
@given(data=st.data())
def test_manifest_fields(good, data):
    m = mutate(good["manifest"], data)
    try:
        parsed = bundle.Manifest.from_json(m, "b/manifest.json")
    except BundleError as e:
        assert str(e).startswith("b/manifest.json: ") and "\n" not in str(e)
        return
    again = bundle.Manifest.from_json(json.loads(json.dumps(parsed.to_json())), "b/manifest.json")
    assert again == parsed  # what loads survives its own round trip


@FUZZ
@given(raw=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_manifest_file_bytes(tmp_path_factory, raw):
    root = tmp_path_factory.mktemp("m")
    (root / bundle.MANIFEST).write_bytes(raw)
    with pytest.raises(BundleError):
        bundle.load_manifest(root, verify=False)


def retag(path, fingerprint: str, task: str) -> None:
    """Give an adapter file another identity record (its FlatBuffer unchanged)."""
    from edgevlm.core import identity

    data = path.read_bytes()
    path.write_bytes(data[: identity.split_adapter(data, str(path))[0]] + identity.adapter_trailer(fingerprint, task))


@FUZZ
@given(data=st.data())
def test_task_sidecar(good, tmp_path_factory, data):
    from edgevlm.runtime import Runtime

    rt = _runtime(good)
    card = tmp_path_factory.mktemp("s") / "nlg2.onnx_adapter"
    shutil.copy(good["root"] / "adapters/nlg.onnx_adapter", card)
    retag(card, good["manifest"]["backbone"]["fingerprint"], good["sidecar"]["name"])  # the file is nlg2's
    card.with_suffix(".json").write_text(json.dumps(mutate(good["sidecar"], data)))
    try:
        task = rt.add_task(card)
    except BundleError:
        return
    assert isinstance(rt, Runtime) and task.name in rt.tasks
    rt._tasks.pop(task.name)  # the next example may use the same name


_RT: dict = {}


def _runtime(good):
    from edgevlm.runtime import Runtime

    if "rt" not in _RT:
        _RT["rt"] = Runtime.load(good["root"], threads=1)
    return _RT["rt"]


@pytest.fixture(scope="module")
def adapter_dir(trained_adapters) -> Path:
    return trained_adapters["qa"]


@FUZZ
@given(data=st.data())
def test_adapter_json(adapter_dir, tmp_path_factory, data):
    from edgevlm.core.config import AdapterMeta

    d = tmp_path_factory.mktemp("a")
    meta = json.loads((adapter_dir / "adapter.json").read_text())
    (d / "adapter.json").write_text(json.dumps(mutate(meta, data)))
    try:
        loaded = AdapterMeta.load(d)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    loaded.save(d)
    assert AdapterMeta.load(d) == loaded


def _safetensors_variant(src: bytes, data) -> bytes:
    """Random bytes, a truncation, byte flips or a header edit of a real adapter.safetensors file."""
    kind = data.draw(st.sampled_from(["random", "truncate", "flip", "header"]))
    if kind == "random":
        return data.draw(st.binary(max_size=200))
    if kind == "truncate":
        return src[: data.draw(st.integers(0, len(src) - 1))]
    if kind == "flip":
        return _flip(src, data.draw(_flips(len(src))))
    n = int.from_bytes(src[:8], "little")
    return _with_header(src, n, mutate(json.loads(src[8 : 8 + n]), data, JSON | st.integers(-5, 10**6)))


def _flips(n: int):
    return st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1, max_size=8)


def _with_header(src: bytes, n: int, header) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + src[8 + n :]


def _flip(src: bytes, flips) -> bytes:
    b = bytearray(src)
    for i, v in flips:
        b[i] = v
    return bytes(b)


@FUZZ
@given(data=st.data())
def test_adapter_safetensors(adapter_dir, tmp_path_factory, data):
    from edgevlm.train.adapters import load_adapter

    src = (adapter_dir / "adapter.safetensors").read_bytes()
    d = tmp_path_factory.mktemp("w")
    shutil.copy(adapter_dir / "adapter.json", d / "adapter.json")
    (d / "adapter.safetensors").write_bytes(_safetensors_variant(src, data))
    try:
        meta, tensors = load_adapter(d)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert meta.task.name == "qa" and all(v.dtype.kind == "f" for v in tensors.values())


@FUZZ
@given(data=st.data())
def test_ort_adapter_file(good, tmp_path_factory, data):
    from edgevlm.runtime.session import load_adapter

    src = (good["root"] / "adapters/nlg.onnx_adapter").read_bytes()
    cut = st.integers(0, len(src) - 1).map(lambda k: src[:k])
    raw = data.draw(st.binary(max_size=300) | cut | _flips(min(len(src), 600)).map(lambda fs: _flip(src, fs)))
    path = tmp_path_factory.mktemp("o") / "x.onnx_adapter"
    path.write_bytes(raw)
    try:
        rt = _runtime(good)
        _, bottleneck, n_tokens = load_adapter(path, rt.graph, rt.manifest.backbone.fingerprint, "nlg")
    except BundleError as e:
        assert "\n" not in str(e)
        return
    assert (bottleneck, n_tokens) == (10, 2)  # loaded: it must be the nlg adapter's shape


def test_bounds_checked_reader_matches_ort(good):
    """edgevlm.core.adapterfile reads what ORT's own reader reads (which segfaulted on some fuzzed files)."""
    import numpy as np
    import onnxruntime as ort

    from edgevlm.core.adapterfile import read_parameters

    for path in sorted((good["root"] / "adapters").iterdir()):
        fmt = ort.AdapterFormat.read_adapter(str(path))
        theirs = {k: np.array(v.numpy(), copy=True) for k, v in fmt.get_parameters().items()}
        ours = read_parameters(path)
        assert sorted(ours) == sorted(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
