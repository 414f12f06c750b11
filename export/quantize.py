"""Quantize the backbone only, block-wise for ONNX Runtime's ``MatMulNBits`` (blocks of 32 along the input dim),
with the blocks of :func:`edgevlm.core.quant.quantize` (:mod:`.blockquant` writes them), the quantizer
``edgevlm train --quant`` trains against, so a task trained for a mode runs on exactly its weights.

``int8``: 8-bit symmetric blocks for every projection and the LM head; the token table 8-bit
``GatherBlockQuantized`` on the LM head's own blocks where the model ties them.

``int4``: 4-bit blocks with an integer zero point for every projection, the LM head (and the tied token table
read from the same bytes) as 4-bit symmetric blocks. One ``MatMulNBits`` per weight, nothing else.

Both run ONNX Runtime's int8-compute kernels (``accuracy_level=4``: activations quantized per token and block
at run time; float compute on quantized weights is several times slower). Not ``quantize_dynamic``: one
activation scale over the whole input makes a token's logits depend on the other tokens in the call, so
cached and re-run decoding disagree (:func:`int8_dynamic` kept for comparison).

Every node that reads an adapter input is excluded, so adapter inputs and their identity default
initializers stay float32 graph inputs (the quantizers otherwise quantize those initializers and the inputs
vanish); :func:`check_adapter_inputs` verifies it. Figures for each choice: README and the commit messages.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from edgevlm.core import quant
from edgevlm.core.errors import ExportError

from . import blockquant
from .graph import LM_HEAD_NODE, TOKEN_GATHER, adapter_nodes, n_layer_of, optional_names

BLOCK = 32
ACCURACY = 4  # int8 activations, per token and block (MatMulNBits accuracy_level)


def quantize(model: onnx.ModelProto, mode: str) -> onnx.ModelProto:
    """``model`` with its backbone weights quantized (``mode`` int8 or int4); fp32 returns it unchanged."""
    if mode == "fp32":
        return model
    keep = set(_float_nodes(model))
    q = blockquant.quantize_graph(model, quant.RECIPES[mode], keep, LM_HEAD_NODE, TOKEN_GATHER, ACCURACY)
    check_adapter_inputs(q, mode)
    return q


def _quiet() -> None:
    for name in ("onnxruntime.quantization", "onnxruntime.quantization.matmul_nbits_quantizer", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes kept in float: everything reading an adapter input, and every table lookup but the token embedding
    (position embeddings, rotary tables: small and shared by every token)."""
    tables = [n.name for n in model.graph.node if n.op_type == "Gather" and n.name != TOKEN_GATHER]
    return adapter_nodes(model) + tables


def nbits(
    model: onnx.ModelProto,
    bits: int,
    accuracy_level: int,
    skip: list[str],
    gather: bool = False,
    symmetric: bool = True,
) -> onnx.ModelProto:
    """MatMul weights (and with ``gather`` the token embedding) -> ``bits``-bit blocks, except nodes in ``skip``;
    ``symmetric=False`` stores a zero point per block besides the scale."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    ops = ("MatMul", "Gather") if gather else ("MatMul",)
    cfg = DefaultWeightOnlyQuantConfig(
        block_size=BLOCK,
        is_symmetric=symmetric,
        accuracy_level=accuracy_level,
        bits=bits,
        op_types_to_quantize=ops,
        quant_axes=(("MatMul", 0), ("Gather", 1)),
    )
    q = MatMulNBitsQuantizer(model, nodes_to_exclude=skip, algo_config=cfg)
    q.process()
    return q.model.model


def int8_dynamic(model: onnx.ModelProto, per_channel: bool = True) -> onnx.ModelProto:
    """ORT's ``quantize_dynamic`` (MatMulInteger, per-tensor activation scale); for comparison only, see module doc."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _quiet()
    with tempfile.TemporaryDirectory(prefix="edgevlm-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(
            onnx.ModelProto.FromString(model.SerializeToString()),
            src,  # a copy: saving externalizes in place
            save_as_external_data=True,
            location="fp32.onnx.data",
        )
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=["MatMul"],
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=adapter_nodes(model),
            use_external_data_format=True,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        q = onnx.load_model(dst)
    check_adapter_inputs(q, "int8-dynamic")
    return q


def check_adapter_inputs(q: onnx.ModelProto, mode: str) -> None:
    """Every adapter input survives as a float32 graph input with its float32 identity default."""
    n_layer = n_layer_of(q)
    inputs = {i.name: i.type.tensor_type.elem_type for i in q.graph.input}
    inits = {t.name: t.data_type for t in q.graph.initializer}
    for n in optional_names(n_layer):
        if inputs.get(n) != onnx.TensorProto.FLOAT or inits.get(n) != onnx.TensorProto.FLOAT:
            raise ExportError(
                f"{mode} quantization removed or changed adapter input {n!r} (adapter switching would break)"
            )
