"""Directory writes that lose nothing when killed (stdlib only): temp dirs named by their writer, an atomic
swap of a finished directory into place, and the recovery and clean-up of what a killed run left behind.

A writer makes ``.<name>.tmp-<pid>-<random>`` beside the target (:func:`make_temp_dir`) and, once it is
complete, calls :func:`replace_dir`. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``: the target
always names either the old or the new directory, never nothing. Elsewhere the old directory is first moved
to ``.<name>.old-<pid>-<random>`` and :func:`recover` (called by the next writer) moves it back when the
process died before the new one arrived. :func:`clean_stale` removes the temp/old directories of writers that
are no longer running.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def make_temp_dir(target: Path, kind: str = "tmp") -> Path:
    """A new empty ``.<target>.<kind>-<pid>-XXXX`` directory beside ``target``."""
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{kind}-{os.getpid()}-"))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names ``a`` and ``b`` (both must exist); False where the OS cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: this filesystem or kernel has no exchange
        return False
    raise OSError(err, os.strerror(err), str(a))


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the complete directory ``tmp`` in place of ``target`` (which may exist); the old one is deleted
    after the swap. Killed at any point, ``target`` is the old or the new directory (see :func:`recover`)."""
    if not target.exists():
        os.replace(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old directory
        return
    old = make_temp_dir(target, "old")
    os.replace(target, old / "dir")
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _pid(path: Path, target: Path, kind: str) -> int | None:
    rest = path.name[len(f".{target.name}.{kind}-") :]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None:  # an older writer's name without a pid: treat as dead
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers(target: Path, kind: str) -> list[Path]:
    """``.<target>.<kind>-*`` directories beside ``target`` whose writer is no longer running."""
    if not target.parent.is_dir():
        return []
    found = target.parent.glob(f".{glob_escape(target.name)}.{kind}-*")
    return sorted(p for p in found if p.is_dir() and not _alive(_pid(p, target, kind)))


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def recover(target: Path) -> Path | None:
    """Move a directory that a killed :func:`replace_dir` had set aside back to ``target`` if ``target`` is
    missing; returns it (None when there was nothing to restore)."""
    if target.exists():
        return None
    for old in leftovers(target, "old"):
        if (old / "dir").is_dir():
            os.replace(old / "dir", target)
            shutil.rmtree(old, ignore_errors=True)
            return target
    return None


def clean_stale(target: Path) -> list[Path]:
    """Restore a set-aside ``target`` (:func:`recover`), then delete the temp and old directories of dead
    writers beside it; returns what was deleted."""
    recover(target)
    gone = leftovers(target, "tmp") + leftovers(target, "old")
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone
