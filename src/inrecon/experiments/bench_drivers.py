"""Bench drivers (registered with :func:`inrecon.experiments.bench.driver`). Importing this module registers
every driver; the bilevel ones live in :mod:`inrecon.experiments.bench_bilevel`."""

from __future__ import annotations

import contextlib

with contextlib.suppress(ModuleNotFoundError):
    from . import bench_bilevel  # noqa: F401
with contextlib.suppress(ModuleNotFoundError):
    from . import bench_disinr  # noqa: F401
