"""Operator registry for the parametrised physics tests.

Each module here defines ``CASES``: a list of ``OpCase`` (name, factory, domain shape and dtype, range shape
and dtype). ``tests/test_operators.py`` walks every case, so a new operator is tested the day it is added.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class OpCase:
    name: str
    factory: Callable[[], object]  # -> LinearOperator, built on the CPU
    domain: tuple[int, ...]
    domain_dtype: torch.dtype
    range: tuple[int, ...]
    range_dtype: torch.dtype
    tol: float = 1e-4  # relative tolerance for adjointness / gradient checks


def all_cases() -> list[OpCase]:
    cases: list[OpCase] = []
    for mod in pkgutil.iter_modules(__path__):
        m = importlib.import_module(f"{__name__}.{mod.name}")
        cases.extend(getattr(m, "CASES", []))
    return cases
