"""BART ``.cfl/.hdr`` files: raw complex64 in Fortran (column-major) order plus a text header of dimensions.

BART's axis order is READ, PHS1, PHS2, COIL, MAPS, ... (up to 16 axes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from inrecon.data.atomic import atomic_path
from inrecon.errors import FileFormatError

__all__ = ["read_cfl", "write_cfl"]


def _base(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".cfl", ".hdr") else p


def read_cfl(path: str | os.PathLike) -> np.ndarray:
    """Read ``path.cfl`` / ``path.hdr`` (with or without the suffix) into a complex64 array in BART order."""
    base = _base(path)
    hdr, cfl = base.with_suffix(".hdr"), base.with_suffix(".cfl")
    for p in (hdr, cfl):
        if not p.exists():
            raise FileFormatError(
                f"BART file {str(p)!r} does not exist", "a BART array needs both .hdr and .cfl"
            )
    lines = [ln.strip() for ln in hdr.read_text(errors="replace").splitlines()]
    try:
        i = lines.index("# Dimensions")
        dims = [int(v) for v in lines[i + 1].split()]
    except (ValueError, IndexError):
        raise FileFormatError(
            f"{hdr}: no '# Dimensions' line followed by integers",
            "the header is corrupt; re-export it with BART",
        ) from None
    n = int(np.prod(dims))
    expected = n * 8
    size = cfl.stat().st_size
    if size != expected:
        raise FileFormatError(
            f"{cfl}: holds {size} bytes but its header {dims} needs {expected} (truncated or wrong header)",
            "re-export the array with BART, or fix the dimensions in the .hdr",
        )
    data = np.fromfile(cfl, dtype=np.complex64, count=n)
    while len(dims) > 1 and dims[-1] == 1:
        dims = dims[:-1]
    return data.reshape(dims, order="F")


def write_cfl(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (any complex or real numeric array, BART axis order) as ``path.cfl`` + ``path.hdr``."""
    base = _base(path)
    a = np.asarray(array).astype(np.complex64)
    dims = list(a.shape) + [1] * max(0, 5 - a.ndim)
    with atomic_path(base.with_suffix(".cfl"), suffix=".cfl") as tmp:
        np.asfortranarray(a).reshape(-1, order="F").tofile(tmp)
    with atomic_path(base.with_suffix(".hdr"), suffix=".hdr") as tmp:
        tmp.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    return base
