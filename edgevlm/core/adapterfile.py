"""A bounds-checked reader of ONNX Runtime adapter files (``.onnx_adapter``), run before ORT sees the file.

ONNX Runtime's ``AdapterFormat.read_adapter`` trusts the flatbuffer's offsets: a file with a few flipped bytes can
crash the process (found by tests/test_fuzz_readers.py). This module walks the same schema (:mod:`edgevlm.core.formats`)
checking every offset, length and the data size of every tensor, and returns name -> float32 array or raises
BundleError naming the file and what is wrong. The runtime, the exporter (reading back what it wrote) and the
verifier all read adapter files here (numpy only, like gguf-py's reader).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from edgevlm.core import formats as fmt
from edgevlm.core import identity
from edgevlm.core.errors import BundleError


class _Buffer:
    """Little-endian reads that fail (BundleError) instead of running past the end."""

    def __init__(self, data: bytes, where: str):
        self.b, self.where = data, where

    def fail(self, what: str) -> BundleError:
        return BundleError(f"{self.where}: not a valid ONNX Runtime adapter file ({what})")

    def read(self, fmt: str, pos: int):
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.b):
            raise self.fail(f"offset {pos} beyond the file's {len(self.b)} bytes")
        return struct.unpack_from(fmt, self.b, pos)[0]

    def table(self, pos: int) -> tuple[int, list[int]]:
        """(table position, field offsets) of the table at ``pos``; every field lies inside the table."""
        vt = pos - self.read("<i", pos)
        vlen, tlen = self.read("<H", vt), self.read("<H", vt + 2)
        if vlen < 4 or vlen % 2 or pos + tlen > len(self.b):
            raise self.fail(f"bad table at {pos}")
        fields = [self.read("<H", vt + 4 + 2 * i) for i in range((vlen - 4) // 2)]
        if any(f and f + 4 > tlen for f in fields):
            raise self.fail(f"field outside its table at {pos}")
        return pos, fields

    def vector(self, field_pos: int, item: int) -> tuple[int, int]:
        """(start, length) of the vector a field points at; it lies inside the file."""
        start = field_pos + self.read("<I", field_pos)
        n = self.read("<I", start)
        if start + 4 + n * item > len(self.b):
            raise self.fail(f"vector of {n} items at {start} runs past the end")
        return start + 4, n


def read_parameters(path: Path) -> dict[str, np.ndarray]:
    """The file's tensors by name (float32 copies), every structure bounds-checked first."""
    return read_adapter_file(path)[0]


def read_adapter_file(path: Path) -> tuple[dict[str, np.ndarray], dict | None]:
    """(tensors by name, the identity record edgevlm appends or None): the FlatBuffer is read within its own
    bytes, the trailer by :func:`edgevlm.core.identity.split_adapter`."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BundleError(f"{path}: cannot read the adapter file ({e.strerror or e})") from None
    end, record = identity.split_adapter(data, str(path))
    return _read_flatbuffer(_Buffer(data[:end], str(path))), record


def _read_flatbuffer(buf: _Buffer) -> dict[str, np.ndarray]:
    if len(buf.b) < 8 or buf.b[4:8] != fmt.ADAPTER_IDENTIFIER:
        raise buf.fail("no TORT file identifier")
    root, fields = buf.table(buf.read("<I", 0))
    if len(fields) < 4 or not fields[3]:
        raise buf.fail("no parameters")
    version = buf.read("<i", root + fields[0]) if fields[0] else 0
    if version != fmt.ADAPTER_FORMAT_VERSION:
        raise buf.fail(f"format version {version}, expected {fmt.ADAPTER_FORMAT_VERSION}")
    start, n = buf.vector(root + fields[3], 4)
    if n > fmt.ADAPTER_MAX_PARAMETERS:
        raise buf.fail(f"{n} parameters")
    out: dict[str, np.ndarray] = {}
    for k in range(n):
        name, array = _parameter(buf, start + 4 * k)
        if name in out:
            raise buf.fail(f"parameter {name!r} twice")
        out[name] = array
    return out


def _parameter(buf: _Buffer, slot: int) -> tuple[str, np.ndarray]:
    pos, f = buf.table(slot + buf.read("<I", slot))
    if len(f) < 4 or not all(f[:4]):
        raise buf.fail(f"parameter at {pos} lacks a field")
    s, n = buf.vector(pos + f[0], 1)
    try:
        name = buf.b[s : s + n].decode("utf-8")
    except UnicodeDecodeError:
        raise buf.fail(f"parameter name at {s} is not UTF-8") from None
    d, rank = buf.vector(pos + f[1], 8)
    dims = [buf.read("<q", d + 8 * i) for i in range(rank)]
    if rank > fmt.MAX_RANK or any(x < 0 for x in dims):
        raise buf.fail(f"parameter {name!r} has dims {dims}")
    if buf.read("<i", pos + f[2]) != fmt.TENSOR_FLOAT:
        raise buf.fail(f"parameter {name!r} is not float32")
    r, size = buf.vector(pos + f[3], 1)
    if size != 4 * math.prod(dims):
        raise buf.fail(f"parameter {name!r}: {size} data bytes for dims {dims}")
    return name, np.frombuffer(buf.b, dtype="<f4", count=size // 4, offset=r).reshape(dims).copy()
