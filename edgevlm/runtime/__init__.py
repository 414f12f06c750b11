"""Torch-free on-device runtime (onnxruntime + numpy + tokenizers)."""
