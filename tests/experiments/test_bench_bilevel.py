"""The Bilevel-paper bench experiments (tuned vs default vs oracle, transfer, real-time series) end to end on
tiny simulated scans: the reports, their tables and figures, the hparams files and the results JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inrecon.config import build_config
from inrecon.errors import InreconError
from inrecon.experiments.bench import available_experiments, load_experiment, run_bench
from inrecon.experiments.drivers.bilevel import BilevelTunedConfig
from inrecon.experiments.drivers.scans import ScanSpec, build_scan
from inrecon.experiments.drivers.series import BilevelSeriesConfig
from inrecon.experiments.drivers.transfer import BilevelTransferConfig
from inrecon.tuning.hparams import load_hparams

# A tiny INR and a 2-trial budget: the tests are about the plumbing, not image quality.
TINY_INR = {"n_levels": 4, "log2_table_size": 10, "base_resolution": 4, "mlp_layers": 2}
SIM = {"kind": "sim", "image": "phantom", "shape": [32, 32], "coils": 4, "af": 3, "acs": 6, "snr_db": 30.0}
BUDGET = {
    "inr": TINY_INR,
    "ngp_default": {"steps": 20, "patience": 6},
    "trial_steps": 20,
    "trial_patience": 6,
    "oracle_eval_every": 5,
    "n_random": 1,
    "n_guided": 1,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(name: str, tmp_path: Path, over: dict) -> tuple[Path, dict, str]:
    path = run_bench(
        name, quick=True, out_dir=tmp_path, show_progress=False, log=lambda *_: None, overrides=over
    )
    out = path.parent
    assert path.exists() and (out / "report.md").exists() and (out / "results.json").exists()
    report = json.loads((out / "report.json").read_text())
    figures = [s["figure"] for s in report["sections"] if "figure" in s]
    assert figures and all((out / f).exists() for f in figures)
    return out, report, (out / "report.md").read_text()


def _section(report: dict, start: str) -> dict:
    return next(s for s in report["sections"] if s["name"].startswith(start))


def test_configs_are_bundled_with_quick_profiles():
    exps = available_experiments()
    types = {
        "bilevel_tuned": BilevelTunedConfig,
        "bilevel_transfer": BilevelTransferConfig,
        "bilevel_series": BilevelSeriesConfig,
    }
    for name, cls in types.items():
        assert name in exps and "CPU" in exps[name]  # the description states the expected run time
        e = load_experiment(name, quick=True)
        assert e.kind == name and e.quick and isinstance(e.config, cls)
    scans = load_experiment("bilevel_tuned", quick=True).config.scans
    assert all(isinstance(s, ScanSpec) for s in scans) and scans[1].shape == (96, 96)


def test_bad_case_entries_are_refused():
    with pytest.raises(InreconError, match=r"scans\[0\].*nme"):
        load_experiment("bilevel_tuned", quick=True, overrides={"scans": [{"nme": "x"}]})
    with pytest.raises(InreconError, match=r"targets\[1\].*contrast"):
        load_experiment("bilevel_transfer", quick=True, overrides={"targets": [{}, {"contrast": "pd"}]})
    with pytest.raises(InreconError, match="scans"):
        load_experiment("bilevel_tuned", quick=True, overrides={"scans": [3]})


def test_build_scan_poisson_matches_cartesian_acceleration():
    cart, note = build_scan(build_config(ScanSpec, {**SIM, "shape": [48, 48], "af": 4}))
    pois, _ = build_scan(build_config(ScanSpec, {**SIM, "shape": [48, 48], "af": 4, "pattern": "poisson"}))
    assert "cartesian_1d" in note and pois.provenance["pattern"].startswith("poisson_disc")
    assert abs(pois.acceleration - cart.acceleration) / cart.acceleration < 0.06
    assert cart.target.shape == (48, 48) and cart.roi is not None


def test_tuned_vs_default_vs_oracle(tmp_path):
    over = {**BUDGET, "scans": [{**SIM, "name": "tiny"}], "classical": ["CG-SENSE"], "default_peak": True}
    out, report, md = _run("bilevel_tuned", tmp_path, over)
    verdict = _section(report, "Requirement")["rows"][0]
    assert verdict["scan"] == "tiny" and verdict[">= 1 dB"] in ("yes", "no")
    assert verdict["tuned - defaults (dB)"] == pytest.approx(verdict["tuned"] - verdict["defaults"])
    methods = [r["method"] for r in _section(report, "tiny: quality")["rows"]]
    assert methods == ["NGP defaults", "bilevel (tuned)", "oracle", "CG-SENSE"]
    tuning = _section(report, "Tuned hyperparameters")["rows"]
    assert [r["mode"] for r in tuning] == ["bilevel (tuned)", "oracle"] and all(
        r["trials"] == 2 for r in tuning
    )
    grid = _section(report, "tiny: reference vs methods")
    assert grid["kind"] == "images" and grid["reference"] and len(grid["methods"]) == 4
    diag = _section(report, "Diagnostics")["rows"][0]
    assert (
        diag["defaults as a trial: rank"].endswith("of 3") and diag["defaults as a trial: held-out loss"] > 0
    )
    assert "tuning progress" in md and "Held-out loss vs PSNR" in md
    res = json.loads((out / "results.json").read_text())["scans"]["tiny"]
    assert len(res["trials_tuned"]) == 2 and res["defaults_peak"]["psnr"] is not None
    rec = load_hparams(out / "hparams" / "tiny_tuned.json")
    assert rec["hparams"]["stop.rule"] == "none" and rec["protocol"]["coils"] == 4
    assert len(list((out / "trials").glob("tiny_tuned_*.jsonl"))) == 1


def test_transfer(tmp_path):
    over = {
        **BUDGET,
        "protocol": {k: v for k, v in SIM.items() if k not in ("kind", "image")},
        "source": {"name": "A", "image": "phantom", "seed": 1},
        "targets": [
            {"name": "B", "image": "phantom", "seed": 2, "noise_seed": 1},
            {"name": "A poisson", "image": "phantom", "seed": 1, "pattern": "poisson"},
        ],
    }
    out, report, _ = _run("bilevel_transfer", tmp_path, over)
    gaps = _section(report, "PSNR (dB) per target")["rows"]
    assert [r["target"] for r in gaps] == ["B", "A poisson"] and all(r["own h"] is not None for r in gaps)
    agg = {r["method"]: r for r in _section(report, "Mean ± std over the 2 targets")["rows"]}
    assert set(agg) == {
        "NGP defaults",
        "transferred h",
        "transferred h + hold-out stop",
        "own h (tuned here)",
    }
    assert agg["transferred h"]["n"] == 2 and set(agg["transferred h"]["psnr"]) == {"mean", "std"}
    every = _section(report, "Every reconstruction")["rows"]
    src_steps = load_hparams(out / "hparams" / "source_tuned.json")["hparams"]["optim.steps"]
    moved = [r for r in every if r["method"] == "transferred h"]
    assert all(r["steps_run"] == src_steps for r in moved)  # the tuned step count travels with h
    assert (out / "hparams" / "target1_tuned.json").exists()
    checks = {r["target"]: r for r in _section(report, "Protocol checks")["rows"]}
    assert "poisson_disc" in checks["A poisson"]["other recorded differences (not warned)"]


def test_series(tmp_path):
    over = {
        "series": {"n_frames": 3, "shape": [32, 32], "af": 2, "n_coils": 4, "acs": 6, "seed": 0},
        "inr": {**TINY_INR, "steps": 20, "patience": 6},
        "residual": {"steps_frame": 8},
        "scratch": {},
    }
    out, report, _ = _run("bilevel_series", tmp_path, over)
    table = {r["method"]: r for r in _section(report, "Mean ± std over the undersampled")["rows"]}
    assert set(table) == {"residual fine-tuning", "from scratch per frame", "CG-SENSE", "GRAPPA"}
    assert all(r["n"] == 2 for r in table.values())
    curves = _section(report, "PSNR per frame")["curves"]
    assert all(len(c["x"]) == 3 for c in curves.values())
    per_frame = json.loads((out / "results.json").read_text())["per_frame"]
    assert [r["steps"] for r in per_frame["residual"]][1:] == [8, 8]
