"""Progress display: one place decides how it looks and when it shows.

Three modes, all on stderr:

- ``bars``: tqdm bars redrawn in place (carriage returns); the default when stderr is a terminal.
- ``lines``: one plain line per bar every :data:`LINE_INTERVAL_S` seconds (and a last one when it ends), nothing
  for a bar that finishes sooner; the default when stderr is a file or a pipe, so ``inrecon ... 2>&1 | cat``
  gets a readable log instead of thousands of redraws.
- ``off``: nothing.

``INRECON_PROGRESS`` chooses: ``0`` (off), ``1`` (bars, even into a pipe) or ``lines``. A caller's
``show=False`` (the command line's ``-q``) always wins; ``show=True`` means "show in the default mode" and
``INRECON_PROGRESS=0`` still silences it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Literal

from tqdm.auto import tqdm

__all__ = ["LINE_INTERVAL_S", "progress", "progress_enabled", "progress_mode"]

LINE_INTERVAL_S = 5.0
"""Seconds between two lines of one bar in ``lines`` mode (``INRECON_PROGRESS_INTERVAL`` overrides; ``0`` writes
a line on every update)."""

Mode = Literal["off", "bars", "lines"]
_ENV_MODES: dict[str, Mode] = {
    "0": "off",
    "false": "off",
    "no": "off",
    "off": "off",
    "": "off",
    "1": "bars",
    "true": "bars",
    "yes": "bars",
    "bars": "bars",
    "lines": "lines",
}


def progress_mode(requested: bool | None = None) -> Mode:
    """``"off"``, ``"bars"`` or ``"lines"``: ``requested=False`` wins, then ``INRECON_PROGRESS``, then whether
    stderr is a terminal (bars) or not (lines). An unknown ``INRECON_PROGRESS`` value counts as ``lines``."""
    if requested is False:
        return "off"
    env = os.environ.get("INRECON_PROGRESS")
    if env is not None:
        return _ENV_MODES.get(env.strip().lower(), "lines")
    isatty = getattr(sys.stderr, "isatty", None)
    return "bars" if callable(isatty) and isatty() else "lines"


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether anything is shown (:func:`progress_mode` is not ``"off"``)."""
    return progress_mode(requested) != "off"


def _line_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("INRECON_PROGRESS_INTERVAL", LINE_INTERVAL_S)))
    except ValueError:
        return LINE_INTERVAL_S


class _LineStream:
    """A file for tqdm that turns its carriage-return redraws into whole lines (repeats dropped)."""

    def __init__(self, stream):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        for part in text.replace("\r", "\n").split("\n"):
            line = part.strip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line

    def flush(self) -> None:
        self.stream.flush()


_LINE_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    show: bool | None = None,
    **kw,
) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total`` steps) in the mode :func:`progress_mode` picks for ``show``."""
    mode = progress_mode(show)
    if mode == "lines":
        every = _line_interval()
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            file=_LineStream(sys.stderr),
            mininterval=every,
            maxinterval=every,
            delay=every,
            leave=True,
            ncols=100,
            bar_format=_LINE_FORMAT,
            **kw,
        )
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=mode == "off",
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        **kw,
    )
