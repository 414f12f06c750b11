"""Training side (torch + transformers): the VLM model and its adapters, backbone loading, task data,
training, evaluation, distillation and the built-in tiny backbone.

Imports only :mod:`edgevlm.core`; importing this package itself loads nothing heavy.
"""
