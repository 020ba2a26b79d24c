"""Where the shared real data lives: ``$INRECON_DATA`` or ``../shared/data`` from the project root."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "find_data"]


def data_root() -> Path:
    """The folder named by ``INRECON_DATA``, else ``../shared/data`` beside the checkout, else ``./shared/data``."""
    env = os.environ.get("INRECON_DATA")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if (parent / "pyproject.toml").exists() and cand.exists():
            return cand
    for cand in (Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"):
        if cand.exists():
            return cand
    return Path.cwd().parent / "shared" / "data"


def find_data(relpath: str) -> Path | None:
    """Path of ``relpath`` under :func:`data_root`, or ``None`` when it is absent."""
    p = data_root() / relpath
    return p if p.exists() else None
