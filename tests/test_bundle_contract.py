"""The bundle contract in core: graph IO declared once (builder, runtime and exporter consume it) and the manifest
dataclasses (round trip, one-line errors naming the field, old manifests still load)."""

from __future__ import annotations

import onnx
import pytest

from edgevlm.core import graphio, names
from edgevlm.core.errors import BundleError
from edgevlm.export.graph import build_graph, declared_io, decoder_io


def test_io_spec_is_architecture_neutral():
    io = graphio.decoder_io(n_layer=2, n_kv_head=2, head_dim=16, n_embd=96, vocab_size=50)
    past = {s.name: s for s in io.past}
    assert list(past) == names.past_names(2)
    assert past[names.past_value(1)].dims == (names.BATCH_DIM, 2, names.PAST_DIM, 16)  # GQA: kv heads, own head_dim
    assert io.outputs[0].dims == (names.BATCH_DIM, names.SEQ_DIM, 50)
    assert io.outputs[1].dims == (names.BATCH_DIM, 2, names.TOTAL_DIM, 16)
    ad = {s.name: s.dims for s in io.adapter_inputs}
    assert ad[names.adapter_name(0, "down.weight")] == (96, names.BOTTLENECK_DIM)
    assert ad[names.TASK_EMBEDDINGS] == (names.TASK_TOKENS_DIM, 96)
    assert past[names.past_key(0)].shape(batch=3, past_sequence=0) == (3, 2, 0, 16)


@pytest.mark.parametrize(
    "dtype, dims, ok",
    [
        ("float32", ["batch", 4, "past", 8], True),  # symbolic dims may carry any name
        ("float32", [None, 4, None, 8], True),  # unknown dims are dynamic
        ("float32", ["batch", 2, "past", 8], False),  # another kv-head count
        ("float32", [1, 4, "past", 8], False),  # batch fixed to 1
        ("float32", ["batch", 4, "past"], False),  # rank
        ("int64", ["batch", 4, "past", 8], False),  # dtype
    ],
)
def test_tensor_spec_mismatch(dtype, dims, ok):
    spec = graphio.TensorSpec("past_key_values.0.key", "float32", ("batch", 4, "past_sequence", 8))
    why = spec.mismatch(dtype, dims)
    assert (why is None) == ok
    if not ok:
        assert why == f"is declared {dtype}{dims}, expected float32['batch', 4, 'past_sequence', 8]"


@pytest.mark.parametrize("fused", [False, True])
def test_builder_declares_exactly_the_spec(tiny_backbone, fused):
    model = build_graph(tiny_backbone.model, fused_attention=fused)
    io = decoder_io(tiny_backbone.model.config)
    graphio.check_graph_io(io, *declared_io(model), "graph")  # raises on any difference
    assert [i.name for i in model.graph.input] == [s.name for s in io.inputs + io.adapter_inputs]
    assert [o.name for o in model.graph.output] == [s.name for s in io.outputs]


def _with_past_dim(model: onnx.ModelProto, name: str, axis: int, value: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dim = next(i for i in m.graph.input if i.name == name).type.tensor_type.shape.dim[axis]
    dim.Clear()
    dim.dim_value = value
    return m


def test_graph_with_other_past_dim_is_refused_by_exporter_check(tiny_backbone):
    model = build_graph(tiny_backbone.model)
    c = tiny_backbone.model.config
    bad = _with_past_dim(model, names.past_value(1), 1, c.n_head + 1)
    with pytest.raises(BundleError) as e:
        graphio.check_graph_io(decoder_io(c), *declared_io(bad), "backbone.onnx")
    hd = c.n_embd // c.n_head
    assert str(e.value) == (
        f"backbone.onnx: graph input {names.past_value(1)} is declared float32['batch', {c.n_head + 1}, "
        f"'past_sequence', {hd}], expected float32['batch', {c.n_head}, 'past_sequence', {hd}]"
    )


def test_graph_with_other_past_dim_is_refused_by_runtime(tiny_backbone, tmp_path):
    from edgevlm.core import bundle
    from edgevlm.runtime.session import check_graph, open_session

    c = tiny_backbone.model.config
    path = tmp_path / "backbone.onnx"
    manifest = {"backbone": tiny_backbone.config_dict, "io": bundle.io_spec(c.n_layer)}
    onnx.save(build_graph(tiny_backbone.model), path)
    g = check_graph(open_session(path, 1), manifest, path)
    assert (g.n_kv_head, g.head_dim) == (c.n_head, c.n_embd // c.n_head)
    hd = c.n_embd // c.n_head
    gqa = {**manifest, "backbone": {**manifest["backbone"], "n_kv_head": 2}}  # the manifest claims 2 kv heads
    with pytest.raises(BundleError) as e:
        check_graph(open_session(path, 1), gqa, path)
    assert str(e.value) == (
        f"{path}: graph input {names.past_key(0)} is declared float32['batch', {c.n_head}, 'past_sequence', {hd}], "
        f"expected float32['batch', 2, 'past_sequence', {hd}]"
    )
    onnx.save(_with_past_dim(build_graph(tiny_backbone.model), names.past_value(2), 0, 1), path)  # batch fixed to 1
    with pytest.raises(BundleError) as e:
        check_graph(open_session(path, 1), manifest, path)
    assert str(e.value).startswith(f"{path}: graph input {names.past_value(2)} is declared float32[1, {c.n_head}, ")
