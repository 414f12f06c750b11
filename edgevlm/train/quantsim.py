"""Train what you ship: the frozen backbone's weights replaced, once at load, by the weights a ``--quant`` bundle
holds (``dequantize(quantize(w))`` with :func:`edgevlm.core.quant.quantize`, the exporter's own quantizer and
recipe), so adapters and task embeddings learn to work with the device's weights rather than the float ones.

The weights replaced are the ones the exporter quantizes: every ``Linear`` / GPT-2 ``Conv1D`` of the backbone
(with the recipe's body blocks, along the input features), the LM head and the token table (head blocks, along
the embedding; one table where the model ties them). Position embeddings and norms stay float, as in the graph.
The int8 activation rounding of the kernels is not simulated (the adapters see float activations).
"""

from __future__ import annotations

import numpy as np

from edgevlm.core import quant
from edgevlm.core.errors import ConfigError

MODES = ("fp32", "int8", "int4")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"--quant {mode!r}: expected one of {list(MODES)}")
    return mode


def _fake(w_kn, bits_sym: tuple[int, bool]):
    """A [K, N] torch weight (any layout) -> its dequantized blocks as a float32 torch tensor [K, N]."""
    import torch

    return torch.from_numpy(quant.fake_quantize(np.asarray(w_kn.detach().float().cpu().numpy()), *bits_sym))


def quantize_model(model, mode: str) -> None:
    """Replace ``model``'s (a frozen HF causal LM's) exported weights by their ``mode`` blocks, in place."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if check_mode(mode) == "fp32":
        return
    recipe = quant.RECIPES[mode]
    head, table = model.get_output_embeddings(), model.get_input_embeddings()
    tied = head.weight is table.weight or head.weight.data_ptr() == table.weight.data_ptr()
    with torch.no_grad():
        if tied and table.weight.shape[1] % quant.BLOCK:  # the graph keeps such a table float: untie it
            table.weight = torch.nn.Parameter(table.weight.detach().clone(), requires_grad=False)
            tied = False
        for m in model.modules():
            if m is head:
                continue
            if isinstance(m, torch.nn.Linear):  # weight [out, in]: the graph's MatMul weight is its transpose
                m.weight.copy_(_fake(m.weight.T, recipe.body).T)
            elif isinstance(m, Conv1D):  # weight already [in, out]
                m.weight.copy_(_fake(m.weight, recipe.body))
        head.weight.copy_(_fake(head.weight.T, recipe.head).T)
        if not tied and table.weight.shape[1] % quant.BLOCK == 0:
            table.weight.copy_(_fake(table.weight.T, recipe.head).T)
