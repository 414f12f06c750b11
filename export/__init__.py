"""The exporter: a frozen GPT-2 + trained task adapters -> an edgevlm bundle (ONNX graph, ORT adapter files, manifest).

Public API: :func:`export_bundle` (the ``edgevlm export`` command) and
:mod:`edgevlm.export.graph` (``build_graph``: the decoder graph with adapter
weights as optional inputs).
"""

from .writer import export_bundle

__all__ = ["export_bundle"]
