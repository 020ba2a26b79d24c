"""benchmarks/ngp_seeds.py: the stage-1 check against hindsight reads the right steps, and a wrong scan name is
refused before any fit, naming the choices."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_script, run_script


def test_stage1_check_reads_the_chosen_and_the_peak_step():
    hist = {"eval_step": [0, 50, 100, 150], "psnr": [8.0, 30.0, float("nan"), 29.0]}
    check = load_script("ngp_seeds").stage1_check({"chosen_steps": 140, "holdout": {"history": hist}})
    # the chosen step's nearest evaluated (finite) step is 150; the peak is step 50's
    assert check == {"stage1_at_chosen": 29.0, "stage1_peak": 30.0, "stage1_peak_step": 50}
    assert (
        load_script("ngp_seeds").stage1_check({"chosen_steps": 10}) == {}
    )  # no hold-out stage (stop.rule=none)


def test_unknown_scan_is_refused_with_the_choices():
    out = run_script("ngp_seeds", "--scan", "no-such-case", "--seeds", "0", check=False)
    assert out.returncode != 0 and "no-such-case" in out.stderr and "dipy-cart-af6" in out.stderr


def test_dipy_test_scan_names_the_missing_data(monkeypatch):
    from inrecon.data import shared
    from inrecon.errors import InreconError
    from inrecon.experiments.drivers.populations import dipy_test_scan

    monkeypatch.setattr(shared, "available", lambda relpath: False)
    with pytest.raises(InreconError, match=r"dipy T1 slice.*INRECON_DATA"):
        dipy_test_scan(128, 6.0)
