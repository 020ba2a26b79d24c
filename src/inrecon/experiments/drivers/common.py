"""What every bench driver shares: typed lists of sub-configs, the report's environment, JSON results and
merged comparisons. Nothing here knows about a particular experiment."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from inrecon.config import build_config, validate_config
from inrecon.errors import InreconError
from inrecon.experiments.runner import Comparison
from inrecon.report import Report, collect_environment

__all__ = ["QUALITY_BEST", "Log", "delta", "entries", "merge", "set_environment"]

Log = Callable[[str], Any]
"""Where a driver writes its progress lines (``print`` on the command line)."""

QUALITY_BEST = {"psnr": "max", "ssim": "max", "nrmse": "min", "seconds": "min"}
"""Which way is better, per metric column (the report marks the best row)."""


def entries(cls: type, items: Iterable[Any], key: str) -> tuple:
    """``items`` -- mappings (from JSON or ``--set``) or ``cls`` instances -- as a tuple of checked ``cls``
    configs. A bad entry raises :class:`InreconError` naming ``key[i]`` and the field."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, cls):
            validate_config(item)
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InreconError(
                f"{key}[{i}]={item!r} is not an object", f"give each entry of {key} as a JSON object"
            )
        try:
            out.append(build_config(cls, item))
        except InreconError as exc:
            fix = exc.fix
            if not fix or "inrecon methods" in fix:
                fix = (
                    f"the keys of an entry of {key} are: {', '.join(f.name for f in dataclasses.fields(cls))}"
                )
            raise InreconError(f"{key}[{i}]: {exc.problem}", fix) from None
    return tuple(out)


def set_environment(rep: Report, t_start: float | None = None) -> Report:
    """Record the machine (and, given the start time, the total wall time and torch threads) in ``rep``."""
    extra: dict[str, Any] = {}
    if t_start is not None:
        extra = {
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "threads": torch.get_num_threads(),
        }
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rep.set_environment(collect_environment(device=device, **extra))
    return rep


def merge(comps: Iterable[Comparison]) -> Comparison:
    """One comparison holding the results, references and ROIs of all of ``comps``."""
    out = Comparison()
    for c in comps:
        out.results += c.results
        out.references.update(c.references)
        out.rois.update(c.rois)
    return out


def delta(a: float | None, b: float | None) -> float | None:
    """``a - b``, or ``None`` when either is missing."""
    return None if a is None or b is None else float(a) - float(b)
