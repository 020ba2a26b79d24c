"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written output, and a run killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "write_json"]


def _umask() -> int:
    """The process umask, read from /proc where possible (no window in which it is changed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``path``.

    ``suffix`` defaults to the target's own suffix(es), so libraries that infer the format from the file name
    (nibabel, matplotlib) still do so. On an exception the temporary file is removed and ``path`` untouched.
    The file gets the usual permissions (``0o666`` less the umask), also when the writer replaced the temporary
    file with one of its own (safetensors, for one, creates it ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """``obj`` as JSON at ``path``, written atomically (numpy scalars and arrays as plain values, anything else
    unknown as its ``str``)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, default=default) + "\n")
