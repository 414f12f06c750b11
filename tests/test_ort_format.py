"""ONNX Runtime conventions (issue 28): ``export --ort`` writes the graph in ONNX Runtime's ``.ort`` format with
the required-operators configuration; the ``.ort`` graph loads, gives the ``.onnx`` graph's logits under every
task's adapter and still switches adapters; execution providers are checked against this ONNX Runtime build."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgevlm.apps.cli import main
from edgevlm.core import bundle, names
from edgevlm.core.errors import BundleError, ConfigError

PROMPT = [5, 17, 99, 3, 250, 41]


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory, tiny_dir):
    from mixed_helpers import random_adapter_dirs

    from edgevlm.export import export_bundle

    root = tmp_path_factory.mktemp("ort-format")
    dirs = random_adapter_dirs(tiny_dir, root / "adapters")
    return export_bundle(str(tiny_dir), dirs, "int8", out=root / "bundle", progress=False, ort_format=True)


def _logits(rt, task: str | None) -> np.ndarray:
    """The graph's logits for PROMPT under ``task``'s LoraAdapter (None: identity defaults). -> [T, V]"""
    g = rt.graph
    feeds = {
        names.INPUT_IDS: np.array([PROMPT], np.int64),
        names.ATTENTION_MASK: np.ones((1, len(PROMPT)), np.int64),
    }
    for n in names.past_names(g.n_layer):
        feeds[n] = np.zeros((1, g.n_kv_head, 0, g.head_dim), np.float32)
    ro = ort.RunOptions()
    if task is not None:
        ro.add_active_adapter(rt.tasks[task].adapter)
    return rt.session.run([names.LOGITS], feeds, ro)[0][0]


def test_the_ort_graph_gives_the_same_logits_and_switches_adapters(ort_bundle):
    from edgevlm.runtime import Runtime

    onnx_rt = Runtime.load(ort_bundle, threads=1)
    ort_rt = Runtime.load(ort_bundle, threads=1, graph="ort")
    assert ort_rt.session._model_path.endswith(bundle.ORT_FILE)
    seen = []
    for task in (None, *onnx_rt.tasks):
        want, got = _logits(onnx_rt, task), _logits(ort_rt, task)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert all(np.abs(got - s).max() > 1e-2 for s in seen)  # every task's adapter changes the logits
        seen.append(got)
    texts = ["name[Aromi], eatType[coffee shop]", "story : tom has a dog . <question> what does tom have ?"]
    for task in onnx_rt.tasks:
        assert ort_rt.generate(texts, task=task, max_new_tokens=8) == onnx_rt.generate(
            texts, task=task, max_new_tokens=8
        )
    mixed = ["nlg", "qa"]
    assert ort_rt.generate(texts, task=mixed, max_new_tokens=8) == onnx_rt.generate(texts, task=mixed, max_new_tokens=8)


def test_the_required_operators_config_is_ort_s_own_format(ort_bundle):
    from onnxruntime.tools.reduced_build_config_parser import parse_config

    m = bundle.load_manifest(ort_bundle)
    assert bundle.ORT_FILE in m.files and bundle.ORT_CONFIG in m.files  # checksummed with the rest
    text = (ort_bundle / bundle.ORT_CONFIG).read_text()
    assert f"# - {bundle.ORT_FILE}\n" in text and str(ort_bundle.parent) not in text  # no temporary path
    required, _ = parse_config(str(ort_bundle / bundle.ORT_CONFIG))
    ops = {(domain, op) for domain, opsets in required.items() for ops in opsets.values() for op in ops}
    import onnx

    graph = onnx.load(ort_bundle / bundle.BACKBONE_FILE, load_external_data=False).graph
    assert ops == {(n.domain or "ai.onnx", n.op_type) for n in graph.node}  # the exported graph needs no other op
    assert ("com.microsoft", "MatMulNBits") in ops and ("com.microsoft", "GroupQueryAttention") in ops


def test_a_changed_ort_file_and_a_bundle_without_one_are_refused(ort_bundle, tmp_path, capsys):
    import shutil

    from edgevlm.runtime import Runtime

    copy = tmp_path / "b"
    shutil.copytree(ort_bundle, copy)
    data = bytearray((copy / bundle.ORT_FILE).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / bundle.ORT_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="backbone.ort"):
        Runtime.load(copy, graph="ort")
    (copy / bundle.ORT_FILE).unlink()
    (copy / bundle.ORT_CONFIG).unlink()
    m = bundle.load_manifest(copy, verify=False)
    files = {k: v for k, v in m.files.items() if k not in (bundle.ORT_FILE, bundle.ORT_CONFIG)}
    sizes = {k: v for k, v in m.sizes.items() if k in files}
    import dataclasses
    import json

    (copy / bundle.MANIFEST).write_text(json.dumps(dataclasses.replace(m, files=files, sizes=sizes).to_json()))
    assert main(["run", str(copy), "--graph", "ort", "--task", "nlg", "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgevlm run: error: {copy}: the bundle has no {bundle.ORT_FILE} (export it with --ort)"]
    with pytest.raises(ConfigError, match="graph must be 'onnx' or 'ort'"):
        Runtime.load(copy, graph="tflite")


def test_run_on_the_ort_graph_prints_what_the_onnx_graph_prints(ort_bundle, capsys):
    text = "name[Aromi], eatType[coffee shop]"
    assert main(["run", str(ort_bundle), "--task", "nlg", "--max-new-tokens", "8", text]) == 0
    want = capsys.readouterr().out
    assert main(["run", str(ort_bundle), "--graph", "ort", "--task", "nlg", "--max-new-tokens", "8", text]) == 0
    assert capsys.readouterr().out == want


def test_providers_are_checked_against_this_build(ort_bundle, capsys):
    from edgevlm.runtime import Runtime

    with pytest.raises(ConfigError, match=r"'CUDAExecutionProviderX' is not in this ONNX Runtime build; available"):
        Runtime.load(ort_bundle, providers=["CUDAExecutionProviderX"])
    rt = Runtime.load(ort_bundle, threads=1, providers=["CPUExecutionProvider"], session_options={"session.x": "1"})
    assert rt.session.get_providers() == ["CPUExecutionProvider"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    assert Runtime.load(ort_bundle, session_options=so).generate("hello", max_new_tokens=3) == rt.generate(
        "hello", max_new_tokens=3
    )
    assert main(["run", str(ort_bundle), "--provider", "NopeExecutionProvider", "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'NopeExecutionProvider' is not in this ONNX Runtime build; available: [" in err[0]
