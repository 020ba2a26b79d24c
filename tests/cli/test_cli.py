"""The command line: every subcommand end to end on tiny data, and bad input -> one line, exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from inrecon.cli import main


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m inrecon.cli ARGS`` in a subprocess (so tracebacks would be visible on stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "inrecon.cli", *args], capture_output=True, text=True, timeout=600
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def mri_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "brain.h5"
    assert (
        main(
            [
                "simulate",
                "--phantom",
                "brain",
                "--size",
                "48",
                "48",
                "--coils",
                "4",
                "--af",
                "3",
                "--acs",
                "8",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "body.h5"
    assert (
        main(
            [
                "simulate",
                "--modality",
                "ct",
                "--phantom",
                "body",
                "--size",
                "64",
                "64",
                "--views",
                "30",
                "--detectors",
                "120",
                "--detector-spacing",
                "1.0",
                "--sod",
                "200",
                "--odd",
                "100",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_info_describes_the_scan(mri_file, capsys):
    assert main(["info", str(mri_file)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["modality"] == "mri"


@pytest.mark.parametrize("method", ["zf", "cgsense", "l1wavelet", "tv"])
def test_recon_classical_mri_writes_image_sidecar_and_metrics(mri_file, tmp_path, method, capsys):
    out = tmp_path / f"{method}.h5"
    assert main(["recon", "--method", method, str(mri_file), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"]["psnr"] > 15
    side = json.loads((tmp_path / f"{method}.h5.json").read_text())
    assert side["config"] and side["summary"]["method"] == method
    with h5py.File(out) as f:
        assert f["image"].shape == (48, 48)


def test_recon_ngp_with_set_and_metrics_command(mri_file, tmp_path, capsys):
    out = tmp_path / "ngp.npy"
    assert (
        main(
            [
                "recon",
                "--method",
                "ngp",
                str(mri_file),
                "-o",
                str(out),
                "--set",
                "steps=20",
                "--set",
                "stop=none",
                "--set",
                "mlp_layers=2",
                "--set",
                "n_levels=6",
                "-q",
            ]
        )
        == 0
    )
    assert np.load(out).shape == (48, 48)
    capsys.readouterr()
    assert main(["metrics", str(out), "--reference", str(mri_file), "--scale"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert set(m) == {"psnr", "ssim", "nrmse"}


def test_recon_summary_says_what_the_hold_out_chose(mri_file, tmp_path, capsys):
    sets = ["steps=30", "patience=10", "n_levels=6", "backbone_candidates=siren", "siren_width=32"]
    args = ["recon", "--method", "ngp", str(mri_file), "-o", str(tmp_path / "n.npy"), "-q"]
    assert main(args + [a for kv in sets for a in ("--set", kv)]) == 0
    chosen = json.loads(capsys.readouterr().out)["chosen"]
    assert chosen["candidate"] in ("hash", "siren") and 1 <= chosen["steps"] <= 75  # SIREN: 2.5x the steps


def test_recon_summary_says_which_ct_grid_ngp_modelled(ct_file, tmp_path, capsys):
    # data.ct_supersample="auto": a scan of at most 128 x 128 pixels is modelled on the 2x finer grid on the CPU
    sets = ["steps=20", "stop.rule=none", "prior.tv=0.01", "n_levels=6"]
    out = tmp_path / "n.npy"
    args = ["recon", "--method", "ngp", str(ct_file), "-o", str(out), "-q"]
    assert main(args + [a for kv in sets for a in ("--set", kv)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ct_supersample"] == 2
    assert np.load(out).shape == (64, 64)  # the block mean, on the scan's grid
    assert main(args + [a for kv in [*sets, "data.ct_supersample=1"] for a in ("--set", kv)]) == 0
    assert json.loads(capsys.readouterr().out)["ct_supersample"] == 1


@pytest.mark.parametrize("method,suffix", [("fbp", ".png"), ("sart", ".nii.gz"), ("tv", ".h5")])
def test_recon_ct(ct_file, tmp_path, method, suffix):
    out = tmp_path / f"{method}{suffix}"
    assert main(["recon", "--method", method, str(ct_file), "-o", str(out), "-q"]) == 0
    assert out.exists()


def test_recon_ct_dicom_series(ct_file, tmp_path):
    out = tmp_path / "dicom"
    assert (
        main(["recon", "--method", "fbp", str(ct_file), "-o", str(out), "--hu-window", "-800", "400", "-q"])
        == 0
    )
    assert any(out.glob("*.dcm"))


@pytest.mark.parametrize(
    "args,needle",
    [
        (["recon", "--method", "nosuch", "IN", "-o", "out.h5"], "unknown method"),
        (["recon", "--method", "fbp", "MRI", "-o", "out.h5"], "reconstructs ct"),
        (["recon", "--method", "zf", "MISSING", "-o", "out.h5"], "does not exist"),
        (["recon", "--method", "zf", "MRI", "-o", "out.xyz"], "unsupported extension"),
        (["recon", "--method", "zf", "MRI", "-o", "out.h5", "--set", "noequals"], "key=value"),
        (["recon", "--method", "cgsense", "MRI", "-o", "out.h5", "--set", "bogus=1"], "unknown config"),
        (["recon", "--method", "disinr", "MRI", "-o", "out.h5"], "pre-trained model"),
        (["info", "TRUNC"], "cannot read"),
        (["info", "NAN"], "NaN"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(args, needle, mri_file, tmp_path):
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(mri_file.read_bytes()[:2000])
    nan = tmp_path / "nan.h5"
    with h5py.File(nan, "w") as f:
        k = np.ones((2, 8, 8), np.complex64)
        k[0, 0, 0] = np.nan
        f["kspace"] = k
    subs = {
        "IN": str(mri_file),
        "MRI": str(mri_file),
        "MISSING": str(tmp_path / "nope.h5"),
        "TRUNC": str(trunc),
        "NAN": str(nan),
    }
    args = [subs.get(a, a) for a in args]
    args = [str(tmp_path / a) if a.startswith("out.") else a for a in args]
    code, _out, err = run_cli(*args)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inrecon: error:"), err
    assert needle.lower() in err.lower()


def test_help_explains_every_subcommand():
    for sub in ["info", "simulate", "recon", "pretrain", "metrics", "tune", "recon-series"]:
        code, out, _ = run_cli(sub, "--help")
        assert code == 0 and len(out) > 200
