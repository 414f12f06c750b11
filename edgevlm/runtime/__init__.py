"""Torch-free on-device runtime (onnxruntime + numpy + tokenizers).

    from edgevlm.runtime import Runtime
    rt = Runtime.load("bundle/", threads=2)
    print(rt.generate("name[Aromi], food[Chinese]", task="nlg"))
"""
from .generation import GenerationConfig
from .runtime import InputTruncated, Runtime
from .session import Task

__all__ = ["GenerationConfig", "InputTruncated", "Runtime", "Task"]
