"""A minimal ONNX protobuf walker (stdlib only): the external-data files a graph names, read from the mapped
file without parsing its weights, and the check that they stay inside the bundle.

ONNX Runtime 1.23 follows any external-data ``location`` a graph names (``../x``, absolute paths), so the
runtime, the exporter and the verifier read the locations here before ORT opens the graph. Field numbers are
in :mod:`edgevlm.core.formats`.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from edgevlm.core import formats as f
from edgevlm.core.errors import BundleError


def varint(buf, i: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``buf[i]``; ValueError when truncated or over 64 bits."""
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[i]
        value, i, shift = value | (byte & 0x7F) << shift, i + 1, shift + 7
        if byte < 0x80:
            return value, i


def messages(buf, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the protobuf message ``buf[start:end]``."""
    i = start
    while i < end:
        key, i = varint(buf, i)
        wire = key & 7
        if wire == f.WIRE_LENGTH:
            n, i = varint(buf, i)
            if i + n > end:
                raise ValueError("field runs past its message")
            yield key >> 3, i, i + n
            i += n
        elif wire == f.WIRE_VARINT:
            i = varint(buf, i)[1]
        elif wire in (f.WIRE_FIXED64, f.WIRE_FIXED32):
            i += 8 if wire == f.WIRE_FIXED64 else 4
        else:
            raise ValueError(f"wire type {wire}")


def locations(buf, kind: str, start: int, end: int) -> Iterator[str]:
    """The external-data ``location`` values of every TensorProto under the ``kind`` message buf[start:end]."""
    if kind == "entry":
        entry = {k: buf[a:b] for k, a, b in messages(buf, start, end)}
        if entry.get(f.ENTRY_KEY) == f.LOCATION_KEY:
            yield entry.get(f.ENTRY_VALUE, b"").decode("utf-8", "replace")
        return
    for k, a, b in messages(buf, start, end):
        if k in f.ONNX_TENSOR_PATHS[kind]:
            yield from locations(buf, f.ONNX_TENSOR_PATHS[kind][k], a, b)


def external_data_files(path: Path) -> set[str]:
    """The external data files a graph names (its TensorProtos' ``location``s), read from the mapped file
    without parsing the weights. BundleError for a file that is not an ONNX protobuf."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return set(locations(mm, "model", 0, len(mm)))
    except (OSError, ValueError) as e:  # mmap of an empty file, a truncated or foreign file
        raise BundleError(f"{path}: not a readable ONNX graph ({e})") from None
    except RecursionError:  # subgraphs nested thousands deep
        raise BundleError(f"{path}: not a readable ONNX graph (subgraphs nested too deeply)") from None


def check_external_data(path: Path, listed: set[Path] | None = None) -> None:
    """Every external data file of the graph is a relative path that stays in the graph's folder, exists and,
    given ``listed``, is one of those files: ORT maps what the graph names, so it must be what was checksummed."""
    folder = path.parent.resolve()
    for loc in sorted(external_data_files(path)):
        if not loc or Path(loc).is_absolute() or "\\" in loc or not (folder / loc).resolve().is_relative_to(folder):
            raise BundleError(f"{path}: external data location {loc!r} must be a relative path inside {folder}")
        if not (folder / loc).is_file():
            raise BundleError(f"{path}: external data file {loc!r} not found next to the graph")
        if listed is not None and (folder / loc).resolve() not in listed:
            raise BundleError(f"{path}: external data file {loc!r} has no checksum in the manifest's files; refused")
