"""benchmarks/ngp_seeds.py: the stage-1 check against hindsight reads the right steps, and a wrong scan name is
refused before any fit, naming the choices."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ngp_seeds.py"


def _module():
    spec = importlib.util.spec_from_file_location("ngp_seeds", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stage1_check_reads_the_chosen_and_the_peak_step():
    hist = {"eval_step": [0, 50, 100, 150], "psnr": [8.0, 30.0, float("nan"), 29.0]}
    check = _module().stage1_check({"chosen_steps": 140, "holdout": {"history": hist}})
    # the chosen step's nearest evaluated (finite) step is 150; the peak is step 50's
    assert check == {"stage1_at_chosen": 29.0, "stage1_peak": 30.0, "stage1_peak_step": 50}
    assert _module().stage1_check({"chosen_steps": 10}) == {}  # no hold-out stage (stop.rule=none)


def test_unknown_scan_is_refused_with_the_choices():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--scan", "no-such-case", "--seeds", "0"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "no-such-case" in out.stderr and "dipy-cart-af6" in out.stderr
