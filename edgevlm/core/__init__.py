"""The contract every side shares (stdlib + numpy only): tensor names and graph IO, errors, task and
adapter configs, the bundle format, prompt building and truncation, atomic file writes.

Nothing here imports torch, onnx or onnxruntime, or any other edgevlm package.
"""
