"""Graph loading and memory: external data files (memory-mapped by ONNX Runtime, never copied into the heap)
are confined to the graph's folder, and a fresh process loading a graph stays within 1.3x its weight bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevlm.core.errors import BundleError
from edgevlm.core.onnxproto import external_data_files
from edgevlm.runtime.session import open_session

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

N = 512


def chain(n: int, layers: int, seed: int = 0) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """x @ w0 @ w1 ... as an ONNX graph (fp32 MatMuls, the weights as initializers) and its weights."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((n, n), dtype=np.float32) * np.float32(n**-0.5) for _ in range(layers)]
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i - 1}", f"w{i}"], [f"h{i}"]) for i in range(layers)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info(f"h{layers - 1}", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return model, weights


def save(model: onnx.ModelProto, path: Path, location: str | None = None) -> Path:
    """``model`` at ``path``, its weights inline or (``location``) in one external data file."""
    if location is None:
        onnx.save(model, path)
    else:
        onnx.save(model, path, save_as_external_data=True, location=location, size_threshold=1024)
    return path


def run(path: Path, x: np.ndarray) -> np.ndarray:
    return open_session(path, 1).run(None, {"x": x})[0]


def test_external_data_graph_runs_like_the_inline_graph(tmp_path):
    model, weights = chain(N, 3)
    inline = save(model, tmp_path / "inline.onnx")
    external = save(model, tmp_path / "ext.onnx", "ext.onnx.data")
    assert external_data_files(inline) == set() and external_data_files(external) == {"ext.onnx.data"}
    assert external.stat().st_size < 10_000  # the weights are in the data file, not the graph
    x = np.random.default_rng(1).standard_normal((1, N), dtype=np.float32)
    want = x @ weights[0] @ weights[1] @ weights[2]
    np.testing.assert_allclose(run(external, x), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(run(external, x), run(inline, x))


@pytest.mark.parametrize("where", ["parent", "absolute", "subdir-escape"])
def test_external_data_outside_the_graph_folder_is_refused(tmp_path, where):
    """ORT 1.23 itself reads a data file anywhere (``../x``, an absolute path): the runtime must refuse it."""
    model, _ = chain(N, 1)
    (tmp_path / "bundle" / "sub").mkdir(parents=True)
    save(model, tmp_path / "outside.onnx", "outside.data")  # a real data file outside the bundle folder
    location = {"parent": "../outside.data", "absolute": str(tmp_path / "outside.data")}.get(where)
    location = location or "sub/../../outside.data"
    for t in model.graph.initializer:
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        t.external_data.add(key="location", value=location)
        t.ClearField("raw_data")
    graph = tmp_path / "bundle" / "backbone.onnx"
    onnx.save(model, graph)
    with pytest.raises(BundleError, match=r"backbone\.onnx: external data location .* must be a relative path inside"):
        open_session(graph, 1)


def test_missing_external_data_and_unreadable_graphs_are_one_clear_error(tmp_path):
    model, _ = chain(N, 1)
    graph = save(model, tmp_path / "g.onnx", "g.data")
    (tmp_path / "g.data").unlink()
    with pytest.raises(BundleError, match=r"g\.onnx: external data file 'g\.data' not found next to the graph"):
        open_session(graph, 1)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(BundleError, match=r"empty\.onnx: not a readable ONNX graph"):
        open_session(empty, 1)
    inner = b""
    for _ in range(5000):  # graph -> node -> attribute -> graph ...: ORT's own limit aside, no RecursionError
        attribute = b"\x32" + _len(inner) + inner
        node = b"\x2a" + _len(attribute) + attribute
        inner = b"\x0a" + _len(node) + node
    deep = tmp_path / "deep.onnx"
    deep.write_bytes(b"\x3a" + _len(inner) + inner)
    with pytest.raises(BundleError, match=r"deep\.onnx: not a readable ONNX graph \(subgraphs nested too deeply\)"):
        open_session(deep, 1)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x0f" * 64)  # wire type 7: not protobuf
    with pytest.raises(BundleError, match=r"junk\.onnx: not a readable ONNX graph"):
        open_session(junk, 1)


def _len(b: bytes) -> bytes:
    """A protobuf varint length prefix."""
    n, out = len(b), bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


PROBE = """
import sys
from pathlib import Path
import numpy as np
from edgevlm.runtime.session import open_session
def rss(field):
    return int(next(s for s in open("/proc/self/status") if s.startswith(field + ":")).split()[1]) * 1024
open_session(Path(sys.argv[1]), 2).run(None, {"x": np.ones((1, 64), np.float32)})  # ORT's fixed costs paid
base = rss("VmRSS")
open_session(Path(sys.argv[2]), 2).run(None, {"x": np.ones((1, int(sys.argv[3])), np.float32)})
print(base, rss("VmHWM"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmHWM")
def test_fresh_process_peak_rss_stays_within_1_3x_the_weight_bytes(tmp_path):
    """Loading + one run of a 64 MiB external-data graph in a fresh process: the peak over the process's
    RSS before it stays <= 1.3x the data file (the same graph with its weights inline exceeds it)."""
    n, layers = 1024, 16
    warm = save(chain(64, 1)[0], tmp_path / "warm.onnx", "warm.data")
    graph = save(chain(n, layers)[0], tmp_path / "big.onnx", "big.data")
    weight_bytes = (tmp_path / "big.data").stat().st_size
    assert weight_bytes >= layers * n * n * 4
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(warm), str(graph), str(n)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    base, peak = map(int, out.stdout.split())
    assert peak - base <= 1.3 * weight_bytes, (peak - base) / weight_bytes
