"""Tests of the scripts in ``benchmarks/``: their paths, imported as modules or run as commands."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` imported as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_script(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python benchmarks/NAME.py ARGS``, output captured."""
    cmd = [sys.executable, str(BENCHMARKS / f"{name}.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)
