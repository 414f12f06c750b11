"""Torch-free on-device runtime (onnxruntime + numpy + tokenizers).

from edgevlm.runtime import Runtime
rt = Runtime.load("bundle/", threads=2)
print(rt.generate("name[Aromi], food[Chinese]", task="nlg"))
print(rt.generate(["name[Aromi]", "hallo welt"], task=["nlg", "mt"]))  # one batch, a task per row
"""

from edgevlm.runtime.batching import Batch, Row
from edgevlm.runtime.generation import GenerationConfig
from edgevlm.runtime.prompt_builder import InputTruncated
from edgevlm.runtime.runtime import Runtime
from edgevlm.runtime.session import Task

__all__ = ["Batch", "GenerationConfig", "InputTruncated", "Row", "Runtime", "Task"]
