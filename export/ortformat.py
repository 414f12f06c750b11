"""The bundle's graph also in ONNX Runtime's ``.ort`` format (``edgevlm export --ort``), with the operator list a
reduced ONNX Runtime build needs (``required_operators.config``, ONNX Runtime's own format for ``build.py
--include_ops_by_config``).

The ``.ort`` file is ONNX Runtime's flatbuffer of the graph after its extended optimizations (fusions every CPU
build has; not the machine-specific layout ones), weights inside: ONNX Runtime Mobile loads it without the ONNX
protobuf parser, and a build reduced to the listed operators cuts the app's binary. The adapter inputs stay graph
inputs with their identity defaults, so ``LoraAdapter`` files switch tasks on it as on ``backbone.onnx``; the
backbone's identity record (metadata) is kept. Both files are listed and checksummed in the manifest.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.core import bundle
from edgevlm.core.errors import ExportError


def write_ort(root: Path) -> list[Path]:
    """``root/backbone.ort`` and ``root/required_operators.config`` from ``root/backbone.onnx``."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    src, dest, config = root / bundle.BACKBONE_FILE, root / bundle.ORT_FILE, root / bundle.ORT_CONFIG
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dest)
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.log_severity_level = 3  # one warning per optional adapter input otherwise
    try:
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        create_config_from_models([dest], config, enable_type_reduction=False)
    except Exception as e:  # ORT's own exception types
        raise ExportError(f"{dest}: ONNX Runtime could not write the .ort graph ({str(e).splitlines()[0]})") from None
    lines = config.read_text().splitlines()  # the generator names the model by its temporary path
    config.write_text("\n".join(f"# - {dest.name}" if ln.startswith("# - ") else ln for ln in lines) + "\n")
    return [dest, config]
