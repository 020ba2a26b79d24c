"""Bench drivers (registered with :func:`inrecon.experiments.bench.driver`). Importing this module registers
every driver: the Bilevel-paper ones live in :mod:`inrecon.experiments.bench_bilevel`, the DisINR-paper ones in
:mod:`inrecon.experiments.bench_disinr`."""

from __future__ import annotations

from . import bench_bilevel, bench_disinr  # noqa: F401  (importing registers the drivers)
