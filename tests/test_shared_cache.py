"""The shared KV cache (manifest ``backbone.kv_cache = "shared"``: past and present one buffer per layer that
GroupQueryAttention appends to in place): which bundles declare it, that decoding on it equals the concat path
step for step (left-padded batches, tasks, every quantization), and what is refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgevlm.core import bundle, identity
from edgevlm.core.errors import BundleError
from edgevlm.export.graph import kv_cache_mode
from edgevlm.runtime import Runtime
from edgevlm.runtime.decoder import left_pad


def _prompts() -> list[list[int]]:
    rng = np.random.default_rng(7)
    return [list(map(int, rng.integers(5, 1000, n))) for n in (11, 6)]  # a left-padded batch of two


def test_bundles_declare_what_their_graph_does(mixed_bundles):
    """The manifest's kv_cache is read off the final graph: shared exactly when GQA writes every present."""
    for arch in ("gpt2", "llama"):
        root = mixed_bundles[arch]("int8")
        m = bundle.load_manifest(root)
        assert m.backbone.kv_cache == kv_cache_mode(onnx.load(root / m.backbone.file, load_external_data=False))
    for arch in ("gpt2", "llama"):  # both fused graphs attend with GroupQueryAttention
        assert bundle.load_manifest(mixed_bundles[arch]("int8")).backbone.kv_cache == "shared", arch


def _steps(rt: Runtime, task, shared: bool, prompts, tokens: np.ndarray) -> list[np.ndarray]:
    """Logits [b, V] of the prefill and of feeding ``tokens`` [n, b] one step at a time."""
    t = rt.task(task)
    ids, mask = left_pad(prompts, 0)
    capacity = ids.shape[1] + len(tokens)
    step = rt.steps.step_fn(t, capacity) if shared else rt.steps.step_fn(t)
    logits, past = step(ids, mask, None)
    out = [logits]
    for tok in tokens:
        mask = np.concatenate([mask, np.ones((len(prompts), 1), np.int64)], axis=1)
        logits, past = step(tok.reshape(-1, 1).astype(np.int64), mask, past)
        out.append(logits)
    return out


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("quant", ["fp32", "int8", "int4"])
def test_shared_cache_equals_the_concat_path_step_by_step(mixed_bundles, arch, quant):
    rt = Runtime.load(mixed_bundles[arch](quant), threads=1)
    tokens = np.random.default_rng(3).integers(5, 1000, (6, 2))
    for task in (None, "nlg", "qa"):
        want = _steps(rt, task, False, _prompts(), tokens)
        got = _steps(rt, task, True, _prompts(), tokens)
        worst = max(float(np.abs(a - b).max()) for a, b in zip(want, got))
        assert worst <= 1e-5, (quant, task, worst)
    plain, nlg = _steps(rt, None, True, _prompts(), tokens), _steps(rt, "nlg", True, _prompts(), tokens)
    assert np.abs(plain[-1] - nlg[-1]).max() > 1e-2  # the bound adapter is in effect (IOBinding ignores RunOptions)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_runtime_generates_the_same_on_both_paths(mixed_bundles, arch):
    """Public API: greedy batch, seeded sampling and the plain backbone give the same with the shared cache."""
    rt = Runtime.load(mixed_bundles[arch]("fp32"), threads=1)
    assert rt.steps.shared
    calls = [
        lambda: rt.generate(["a short one", "a somewhat longer input text here"], task="nlg", max_new_tokens=8),
        lambda: rt.generate("sampled", task="qa", max_new_tokens=8, do_sample=True, seed=4, temperature=0.9),
        lambda: rt.generate_tokens(_prompts()[0], None, max_new_tokens=8, min_new_tokens=8),
    ]
    shared = [c() for c in calls]
    rt.steps.shared = False
    assert [c() for c in calls] == shared


def test_a_run_past_the_capacity_is_refused(mixed_bundles):
    rt = Runtime.load(mixed_bundles["llama"]("fp32"), threads=1)
    step = rt.steps.step_fn(None, 4)
    _, cache = step(np.ones((1, 4), np.int64), np.ones((1, 4), np.int64), None)
    with pytest.raises(RuntimeError, match="capacity 4"):
        step(np.ones((1, 1), np.int64), np.ones((1, 5), np.int64), cache)


def test_manifest_and_graph_must_agree_on_the_cache(mixed_bundles, tmp_path):
    """A manifest claiming another cache than its graph was exported with is refused at load (one line); a graph
    exported before the field counts as concat."""
    import shutil

    root = shutil.copytree(mixed_bundles["llama"]("fp32"), tmp_path / "b")
    m = json.loads((root / bundle.MANIFEST).read_text())
    m["backbone"]["kv_cache"] = "concat"
    (root / bundle.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"backbone.kv_cache='shared' but the manifest says 'concat'"):
        Runtime.load(root)
    record = bundle.load_manifest(root).backbone
    stored = {k: getattr(record, k) for k in identity.FIELDS if k != "kv_cache"}
    meta = {identity.GRAPH_METADATA_KEY: json.dumps(stored)}
    identity.check_graph_metadata(meta, record, "g.onnx")  # concat: what an older graph meant
    with pytest.raises(BundleError, match="kv_cache='concat'"):
        identity.check_graph_metadata(meta, record.__class__(**{**record.to_json(), "kv_cache": "shared"}), "g.onnx")
