"""Bench drivers (registered with :func:`inrecon.experiments.bench.driver`). Importing this module registers
every driver: the Bilevel-paper ones live in :mod:`inrecon.experiments.drivers.bilevel`, the DisINR-paper ones in
:mod:`inrecon.experiments.drivers.disinr`."""

from __future__ import annotations

from inrecon.experiments.drivers import bilevel, disinr  # noqa: F401  (importing registers the drivers)
