"""Quantize the backbone only: ``int8`` (dynamic, per-channel MatMul weights) and ``int4`` (block-wise MatMulNBits).

Every node that reads an adapter input is excluded, so adapter inputs and
their identity default initializers stay float32 graph inputs (ONNX Runtime's
quantizers otherwise quantize those initializers and the inputs vanish).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from edgevlm import names
from edgevlm.errors import ExportError

from .graph import adapter_nodes

INT4_BLOCK = 32


def quantize(model: onnx.ModelProto, mode: str, per_channel: bool = True, large: bool = False) -> onnx.ModelProto:
    """``model`` with its backbone weights quantized (``mode`` int8 or int4); fp32 returns it unchanged."""
    if mode == "fp32":
        return model
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    q = _int8(model, per_channel, large) if mode == "int8" else _int4(model)
    check_adapter_inputs(q, model, mode)
    return q


def _int8(model: onnx.ModelProto, per_channel: bool, large: bool) -> onnx.ModelProto:
    """Dynamic int8: MatMul weights -> MatMulInteger (activations quantized per run); embeddings stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="edgevlm-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(model, src, save_as_external_data=large, location="fp32.onnx.data")
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], per_channel=per_channel, weight_type=QuantType.QInt8,
                         nodes_to_exclude=adapter_nodes(model), use_external_data_format=large,
                         extra_options={"MatMulConstBOnly": True})
        return onnx.load_model(dst)


def _int4(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weight-only int4: MatMul weights (LM head included) -> MatMulNBits, token embedding -> GatherBlockQuantized."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    cfg = DefaultWeightOnlyQuantConfig(block_size=INT4_BLOCK, is_symmetric=True, op_types_to_quantize=("MatMul", "Gather"),
                                       quant_axes=(("MatMul", 0), ("Gather", 1)))
    q = MatMulNBitsQuantizer(model, nodes_to_exclude=adapter_nodes(model), algo_config=cfg)
    q.process()
    return q.model.model


def check_adapter_inputs(q: onnx.ModelProto, ref: onnx.ModelProto, mode: str) -> None:
    """Every adapter input survives as a float32 graph input with its float32 identity default."""
    n_layer = sum(1 for i in ref.graph.input if i.name.startswith("past_key_values.") and i.name.endswith(".key"))
    want = names.adapter_names(n_layer)
    inputs = {i.name: i.type.tensor_type.elem_type for i in q.graph.input}
    inits = {t.name: t.data_type for t in q.graph.initializer}
    for n in want:
        if inputs.get(n) != onnx.TensorProto.FLOAT or inits.get(n) != onnx.TensorProto.FLOAT:
            raise ExportError(f"{mode} quantization removed or changed adapter input {n!r} (adapter switching would break)")
