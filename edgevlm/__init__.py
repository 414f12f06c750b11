"""edgevlm: one frozen GPT-2, many generation tasks via VLM adapters, deployed as an ONNX bundle.

Importing ``edgevlm`` is light (stdlib only); torch is imported only by the
training and export modules, never by :mod:`edgevlm.runtime`.
"""

__version__ = "0.1.0"
