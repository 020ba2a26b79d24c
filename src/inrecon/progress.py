"""Progress bars: one place decides how they look and when they show.

Bars go to stderr, show only when stderr is a terminal (or when forced with ``INRECON_PROGRESS=1``), and
are silenced with ``INRECON_PROGRESS=0``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm

__all__ = ["progress", "progress_enabled"]


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether to draw a bar: an explicit request wins, then ``INRECON_PROGRESS``, then "is stderr a tty"."""
    if requested is not None:
        return bool(requested)
    env = os.environ.get("INRECON_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    show: bool | None = None,
    **kw,
) -> tqdm:
    """A tqdm bar (disabled unless :func:`progress_enabled`)."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=not progress_enabled(show),
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        **kw,
    )
