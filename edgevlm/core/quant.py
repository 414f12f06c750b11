"""Block quantization of backbone weights: the one quantizer both the exporter (which writes the blocks into
ONNX Runtime's ``MatMulNBits`` / ``GatherBlockQuantized``) and training (which trains adapters against the
dequantized weights, ``edgevlm train --quant``) call, so the weights a task is trained on are bit for bit the
weights the device runs.

A weight [K, N] (a MatMul's, K = input features) is cut into blocks of :data:`BLOCK` rows along K per output
column; a block is ``scale * (code - zero_point)`` with integer codes in ``0 .. 2**bits - 1``:

- asymmetric (the int4 body): a float32 scale and an *integer* zero point per block (ONNX Runtime's packed
  integer kernels; a float zero point only runs its unpacked fallback);
- symmetric (int8, and the int4 LM head / token table): the zero point fixed at ``2**(bits-1)`` (ONNX
  Runtime's default when none is stored), a signed scale mapping the block's largest magnitude to the most
  negative code.

The scale is chosen per block among :data:`SHRINK` fractions of the full range (the smallest squared error
wins: clipping a lone outlier can pay), then refitted by least squares on the chosen codes. Every step is
elementwise float32 arithmetic in a fixed order, so a column's blocks do not depend on the columns quantized with
it (training quantizes q/k/v one by one, the exporter packed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32
SHRINK = (1.0, 0.95, 0.9, 0.85, 0.8)  # candidate fractions of the block's range for the scale
CHUNK = 4096  # output columns quantized at a time (bounds temporary memory on large LM heads)


@dataclass(frozen=True)
class Recipe:
    """(bits, symmetric) for the body's projections and for the LM head / token table of one ``--quant`` mode."""

    body: tuple[int, bool]
    head: tuple[int, bool]


RECIPES = {"int8": Recipe(body=(8, True), head=(8, True)), "int4": Recipe(body=(4, False), head=(4, True))}


@dataclass(frozen=True)
class Blocks:
    """A [K, N] weight as ``scale * (codes - zero_point)`` per block of :data:`BLOCK` rows (K padded up)."""

    codes: np.ndarray  # [N, KB, BLOCK] uint8
    scales: np.ndarray  # [N, KB] float32
    zero_points: np.ndarray | None  # [N, KB] uint8 (asymmetric), None: 2**(bits-1) (symmetric)
    bits: int
    k: int  # rows of the original weight

    def dequantize(self) -> np.ndarray:
        """The float32 weight these blocks stand for, [K, N] (float32 arithmetic, as the kernels dequantize)."""
        zp = np.float32(1 << (self.bits - 1)) if self.zero_points is None else self.zero_points[..., None]
        w = (self.codes.astype(np.float32) - np.asarray(zp, np.float32)) * self.scales[..., None]  # [N, KB, BLOCK]
        return np.ascontiguousarray(w.reshape(len(self.codes), -1)[:, : self.k].T)


def quantize(w: np.ndarray, bits: int = 4, symmetric: bool = False) -> Blocks:
    """Blocks of a [K, N] weight along K (the last block padded with zeros). ``bits`` 4 or 8."""
    if w.ndim != 2 or bits not in (4, 8):
        raise ValueError(f"quantize: expected a 2-D weight and bits 4 or 8, got shape {w.shape}, bits {bits}")
    k, n = w.shape
    kb = -(-k // BLOCK)
    wb = np.zeros((kb * BLOCK, n), np.float32)
    wb[:k] = w
    cols = [wb[:, c : c + CHUNK].T.reshape(-1, kb, BLOCK) for c in range(0, n, CHUNK)]  # [n', KB, BLOCK] each
    parts = [_quantize_columns(b, bits, symmetric) for b in cols]
    codes, scales, zps = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return Blocks(codes, scales, None if symmetric else zps, bits, k)


def fake_quantize(w: np.ndarray, bits: int = 4, symmetric: bool = False) -> np.ndarray:
    """``quantize(w).dequantize()``: the float32 weight the quantized graph computes with. [K, N] -> [K, N]"""
    return quantize(w, bits, symmetric).dequantize()


def _quantize_columns(b: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, scales, zero points) of blocks ``b`` [n, KB, BLOCK] float32: the best candidate scale per block,
    then a least-squares refit of the scale on its codes."""
    best = None
    for f in SHRINK:
        scale, zp = _candidate(b, bits, symmetric, np.float32(f))
        codes = _codes(b, scale, zp, bits)
        err = _sq_error(b, codes, scale, zp)
        if best is None:
            best = [codes, scale, zp, err]
            continue
        better = err < best[3]
        for i, new in enumerate((codes, scale, zp, err)):
            best[i] = np.where(better[..., None] if best[i].ndim == 3 else better, new, best[i])
    codes, scale, zp = best[0], best[1], best[2]
    scale = _refit(b, codes, scale, zp)
    codes = _codes(b, scale, zp, bits)
    return codes.astype(np.uint8), scale.astype(np.float32), zp.astype(np.uint8)


def _candidate(b: np.ndarray, bits: int, symmetric: bool, f: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point) [n, KB] float32 for a fraction ``f`` of each block's range."""
    top = np.float32((1 << bits) - 1)
    if symmetric:
        half = np.float32(1 << (bits - 1))
        i = np.abs(b).argmax(-1)[..., None]
        signed_max = np.take_along_axis(b, i, -1)[..., 0]  # the largest magnitude, with its sign
        scale = signed_max * f / -half  # that value lands on code 0 = -half steps
        return np.where(scale != 0, scale, np.float32(1)), np.full(scale.shape, half, np.float32)
    lo, hi = np.minimum(b.min(-1), 0), np.maximum(b.max(-1), 0)  # the grid holds zero (integer zero point)
    scale = (hi - lo) * f / top
    scale = np.where(scale > 0, scale, np.float32(1))
    return scale, np.clip(np.rint(-lo / scale), 0, top)


def _codes(b: np.ndarray, scale: np.ndarray, zp: np.ndarray, bits: int) -> np.ndarray:
    """Nearest codes [n, KB, BLOCK] (float32 values) of blocks ``b`` on the grid ``scale * (code - zp)``."""
    return np.clip(np.rint(b / scale[..., None]) + zp[..., None], 0, (1 << bits) - 1)


def _sq_error(b: np.ndarray, codes: np.ndarray, scale: np.ndarray, zp: np.ndarray) -> np.ndarray:
    return _block_sum(np.square((codes - zp[..., None]) * scale[..., None] - b))


def _block_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis in a fixed order (numpy's own reductions pick their order by the array's shape,
    which would make a weight's blocks depend on the columns quantized with it). [..., BLOCK] -> [...]"""
    acc = x[..., 0].copy()
    for j in range(1, x.shape[-1]):
        acc += x[..., j]
    return acc


def _refit(b: np.ndarray, codes: np.ndarray, scale: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """The least-squares scale for fixed codes (kept where the codes are all at the zero point)."""
    c = codes - zp[..., None]
    den = _block_sum(np.square(c))
    fit = _block_sum(c * b) / np.where(den > 0, den, np.float32(1))
    return np.where((den > 0) & (fit != 0), fit, scale).astype(np.float32)
