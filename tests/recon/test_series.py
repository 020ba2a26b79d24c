"""Residual learning for real-time series: simulation, file round trip, residual vs scratch, the CLI."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch

from inrecon.config import build_config
from inrecon.data.io.hdf5 import read_scan, write_scan
from inrecon.data.scans import SeriesScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.simulate.series import series_images, simulate_series
from inrecon.recon.api import run_method
from inrecon.recon.series import SeriesConfig, reconstruct_series


def _run(series, **over):
    res = reconstruct_series(series, build_config(SeriesConfig, {**SMALL, **over}))
    return res.image, res.info


# Small INR settings that learn in tens of steps at 32x32 (the 8-layer default needs far more).
SMALL = {"mlp_layers": 2, "lr": 3e-3, "n_levels": 8, "log2_table_size": 12, "stop": "none", "steps": 60}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def frames():
    return simulate_series(3, (32, 32), af=2, n_coils=4, seed=0, acs=6)


def test_simulation_moves_and_undersamples(frames):
    imgs = series_images(4, (48, 48), seed=0)
    assert imgs.shape == (4, 48, 48) and imgs.dtype == np.float32 and 0 <= imgs.min() and imgs.max() <= 1
    assert np.abs(imgs[1] - imgs[0]).sum() > 1.0  # the needle advances
    assert series_images(3, (48, 48), motion="disc").shape == (3, 48, 48)
    f = frames.frames
    assert f[0].mask.all() and not f[1].mask.all()
    assert not torch.equal(f[1].mask, f[2].mask)  # the line lattice shifts per frame
    assert torch.equal(f[0].sens_maps, f[2].sens_maps)
    assert f[1].target is not None and f[1].provenance["frame"] == 1 and frames.target.shape == (3, 32, 32)
    with pytest.raises(InreconError, match="motion"):
        series_images(2, (32, 32), motion="wobble")


def test_residual_starts_from_previous_weights(frames):
    res_imgs, res = _run(frames, steps_frame=15, mode="residual")
    _, scr = _run(frames, mode="scratch")
    assert res_imgs.shape == (3, 32, 32) and res_imgs.is_complex()
    assert [r["steps"] for r in res["frames"]] == [60, 15, 15]
    assert [r["steps"] for r in scr["frames"]] == [60, 60, 60]
    # frame 1's first fine-tuning loss (previous frame's weights) is far below a fresh model's first loss
    assert res["frames"][1]["first_loss"] < 0.05 * scr["frames"][1]["first_loss"]
    # frame 0 is fitted identically in both modes
    assert res["frames"][0]["psnr"] == pytest.approx(scr["frames"][0]["psnr"])
    assert res["frames"][0]["psnr"] > 25 and res["seconds_per_frame"] > 0
    assert {"psnr_mean", "ssim_mean", "seconds_first"} <= set(res)


def test_an_auto_prior_weight_is_chosen_on_frame_0_and_kept(frames):
    two = SeriesScan(frames.frames[:2])
    _, info = _run(two, steps_frame=5, **{"ngp.prior.tv": "auto", "ngp.prior.tv_candidates": "0,0.01"})
    chosen = info["frames"][0]["prior_tv"]
    assert chosen in (0.0, 0.01) and info["frames"][1]["steps"] == 5
    _, fixed = _run(two, steps_frame=5, **{"ngp.prior.tv": chosen})
    assert fixed["frames"][1]["psnr"] == pytest.approx(info["frames"][1]["psnr"])


def test_holdout_per_frame(frames):
    imgs, info = _run(SeriesScan(frames.frames[:2]), steps_frame=12, frame_stop="holdout", patience=4)
    assert imgs.shape == (2, 32, 32) and info["frames"][1]["best_step"] is not None
    assert info["frames"][1]["steps"] <= 12


def test_file_round_trip(frames, tmp_path):
    path = write_scan(tmp_path / "s.h5", frames)
    with h5py.File(path) as f:
        assert f.attrs["modality"] == "mri-series" and f["kspace"].shape == (3, 4, 32, 32)
        assert f["mask"].dtype == np.uint8 and f["target"].shape == (3, 32, 32)
    back = read_scan(path)
    assert isinstance(back, SeriesScan) and back.n_frames == 3
    for a, b in zip(frames.frames, back.frames):
        assert torch.equal(a.kspace, b.kspace) and torch.equal(a.mask, b.mask)
        assert torch.equal(a.sens_maps, b.sens_maps) and torch.allclose(a.target, b.target)
    # without maps the series still reconstructs: ESPIRiT from frame 0, shared by all frames
    bare = SeriesScan([dataclasses.replace(f, sens_maps=None) for f in frames.frames])
    no_maps = read_scan(write_scan(tmp_path / "n.h5", bare))
    assert no_maps.frames[0].sens_maps is None
    imgs, _ = _run(no_maps, steps=5, steps_frame=2)
    assert imgs.shape == (3, 32, 32)


def test_bad_files_and_config(frames, tmp_path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f.attrs["modality"] = "mri-series"
        f["kspace"] = np.zeros((2, 4, 8, 8), np.complex64)
        f["mask"] = np.ones((3, 8, 8), np.uint8)
    with pytest.raises(ShapeError, match="one mask per frame"):
        read_scan(p)
    with pytest.raises(InreconError, match="mode"):
        build_config(SeriesConfig, {"mode": "sideways"})
    with pytest.raises(InreconError, match="no frames"):
        SeriesScan([])
    with pytest.raises(InreconError, match="reconstructs mri-series"):
        run_method("series", frames.frames[0])


def test_cli_recon_series(frames, tmp_path):
    from inrecon import cli

    path = write_scan(tmp_path / "s.h5", frames)
    hp = tmp_path / "h.json"
    hp.write_text(json.dumps({"method": "ngp", "hparams": {**SMALL, "steps": 30}}))
    parser = cli.build_parser()
    out = tmp_path / "out.npy"
    args = parser.parse_args(
        ["recon-series", str(path), "-o", str(out), "--hparams", str(hp), "--steps-frame", "5", "-q"]
    )
    assert args.func(args) == 0
    stack = np.load(out)
    assert stack.shape == (3, 32, 32) and np.iscomplexobj(stack)
    side = json.loads((tmp_path / "out.npy.json").read_text())
    assert side["config"]["ngp"]["optim"]["steps"] == 30
    assert [r["steps"] for r in side["info"]["frames"]] == [30, 5, 5]
    bad = parser.parse_args(["recon-series", str(path), "-o", str(tmp_path / "out.png")])
    with pytest.raises(InreconError, match="extension"):
        bad.func(bad)


def test_cli_simulate_frames_writes_a_series_file(tmp_path):
    from inrecon import cli

    parser = cli.build_parser()
    out = tmp_path / "series.h5"
    args = parser.parse_args(
        [
            "simulate",
            "--frames",
            "3",
            "--size",
            "32",
            "32",
            "--af",
            "4",
            "--acs",
            "6",
            "--coils",
            "4",
            "-o",
            str(out),
        ]
    )
    assert args.func(args) == 0
    frames = read_scan(out).frames
    assert len(frames) == 3 and frames[0].kspace.shape == (4, 32, 32)
    assert bool(frames[0].mask.all()) and abs(frames[1].mask.float().mean().item() - 0.25 - 6 / 32) < 0.1
    assert not torch.equal(frames[1].mask, frames[2].mask)  # the Cartesian lattice shifts per frame
    bad = parser.parse_args(
        ["simulate", "--frames", "3", "--pattern", "radial", "-o", str(tmp_path / "x.h5")]
    )
    with pytest.raises(InreconError, match="--frames"):
        bad.func(bad)
