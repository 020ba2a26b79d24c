"""Issue 14: nothing lost, nothing silently wrong, every check before the work; issue 13 item 8: progress and
logging. Tiny inputs, in-process where possible (subprocesses only for broken pipes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from inrecon.cli import main
from inrecon.cli.housekeeping import clean_stale_temporaries
from tests.cli.tiny_files import ct_file, mri_file, one_error_line

SMALL = ["n_levels=6", "log2_table_size=10", "mlp_layers=2", "mlp_width=32", "eval_every=10"]


def sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def mri(tmp_path_factory):
    return mri_file(tmp_path_factory.mktemp("in") / "mri.h5")


def _age(path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


# --- 1, 3: data loss ----------------------------------------------------------------------------------------------
def test_recon_refuses_to_overwrite_its_input_and_leaves_it_intact(mri, tmp_path, capsys):
    x = tmp_path / "x.h5"
    x.write_bytes(mri.read_bytes())
    assert main(["recon", "--method", "zf", str(x), "-o", str(x)]) == 2
    assert "is the input" in one_error_line(capsys.readouterr().err)
    assert x.read_bytes() == mri.read_bytes()


def test_stale_temporaries_of_a_killed_run_are_removed_by_the_next_run(mri, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".o.k3_9ab0z.h5"  # what atomic_path leaves behind after kill -9
    stale_side = out / ".o.h5.a1b2c3d4.json"
    fresh = out / ".o.zz00zz00.h5"  # newer than this process: another run's, in progress
    keep = [out / ".bashrc", out / ".o.notes.h5", out / "o.h5.bak", out / ".o.k3_9ab0z.txt"]
    for p in [stale, stale_side, fresh, *keep]:
        p.write_bytes(b"x")
    for p in [stale, stale_side, *keep]:
        _age(p, 3600)
    _age(fresh, -3600)
    assert main(["recon", "--method", "zf", str(mri), "-o", str(out / "o.h5"), "-q"]) == 0
    assert not stale.exists() and not stale_side.exists()
    assert fresh.exists() and all(p.exists() for p in keep)
    assert (out / "o.h5").exists()


def test_a_temporary_open_in_a_process_is_not_removed(tmp_path):
    busy = tmp_path / ".scan.abcdefgh.h5"
    busy.write_bytes(b"x")
    _age(busy, 3600)
    with open(busy, "rb"):
        assert clean_stale_temporaries(tmp_path) == []
    assert clean_stale_temporaries(tmp_path) == [busy]


def test_checkpoints_are_removed_after_a_successful_run_unless_kept(mri, tmp_path, capsys):
    ck = tmp_path / "ck"
    base = [
        "recon",
        "--method",
        "ngp",
        str(mri),
        *sets(
            *SMALL,
            "steps=6",
            "stop=none",
            "checkpoint_every=3",
            "prior.phase=0.003",
            "prior.tv=0",
            "splitting.noise=0",
        ),  # one fit (no denoiser prior after it)
    ]
    assert main([*base, "-o", str(tmp_path / "a.npy"), "--checkpoint-dir", str(ck)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert not ck.exists() and summary["checkpoints_removed"] == 1
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.pt.txt").write_text("mine")
    assert main([*base, "-o", str(tmp_path / "b.npy"), "--checkpoint-dir", str(user)]) == 0
    assert sorted(p.name for p in user.iterdir()) == ["notes.pt.txt"]
    capsys.readouterr()
    assert (
        main([*base, "-o", str(tmp_path / "c.npy"), "--checkpoint-dir", str(ck), "--keep-checkpoints"]) == 0
    )
    cap = capsys.readouterr()
    assert (ck / "fit.pt").exists()
    assert "kept 1 checkpoint file(s)" in cap.err and "MB" in cap.err
    assert json.loads(cap.out)["checkpoint_bytes"] == (ck / "fit.pt").stat().st_size
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "c.npy"))
    # a folder left by an earlier (here: kept, in practice killed) run holds only ours: resumed, then removed
    assert main([*base, "-o", str(tmp_path / "d.npy"), "--checkpoint-dir", str(ck)]) == 0
    assert not ck.exists()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "d.npy"))


def test_pretrain_prints_json_and_removes_its_checkpoints(mri, tmp_path, capsys):
    ck = tmp_path / "ck"
    out = tmp_path / "m.safetensors"
    args = ["pretrain", "--method", "disinr", "--data", str(mri), str(mri), "-o", str(out)]
    args += sets("steps=4", "n_levels=6", "log2_table_size=10", "encoder_width=16", "decoder_width=16")
    assert main([*args, "--checkpoint-dir", str(ck), "-q"]) == 0
    cap = capsys.readouterr()
    result = json.loads(cap.out)
    assert result["output"] == str(out) and result["subjects"] == 2 and result["seconds"] > 0
    assert out.exists() and not ck.exists() and cap.err == ""


# --- 5-7: silently wrong results ----------------------------------------------------------------------------------
def test_ct_angles_in_degrees_are_refused_naming_radians(tmp_path):
    from inrecon.data.io.load import load_scan
    from inrecon.errors import InreconError

    with pytest.raises(InreconError, match="radians expected"):
        load_scan(ct_file(tmp_path / "deg.h5", degrees=True))
    assert load_scan(ct_file(tmp_path / "rad.h5")).n_views == 20


def test_coil_maps_of_a_transposed_or_flipped_kspace_are_refused(one_thread):
    import dataclasses

    from inrecon.errors import InreconError
    from inrecon.physics.coils import coil_maps
    from tests.inr_fixtures import tiny_mri

    scan = tiny_mri(n_coils=4)
    assert coil_maps(scan) is scan.sens_maps  # a consistent scan passes
    t = dataclasses.replace(scan, kspace=scan.kspace.transpose(-1, -2), mask=scan.mask.T)
    with pytest.raises(InreconError, match="transposed"):
        coil_maps(t)
    f = dataclasses.replace(scan, kspace=scan.kspace.flip(-1), mask=scan.mask.flip(-1))
    with pytest.raises(InreconError, match="flipped along axis -1"):
        coil_maps(f)


def test_holdout_choosing_a_first_step_warns_and_falls_back_to_min_chosen(tmp_path, capsys):
    scan = mri_file(tmp_path / "one.h5", n_coils=1)
    out = tmp_path / "o.npy"
    settings = sets(*SMALL, "steps=20", "lr=0.5", "min_steps=1", "patience=4", "min_chosen=0.2")
    assert main(["recon", "--method", "ngp", str(scan), "-o", str(out), *settings]) == 0
    err = capsys.readouterr().err
    info = json.loads((tmp_path / "o.npy.json").read_text())["info"]
    assert info["holdout"]["rule_chose"] < 4
    assert info["chosen_steps"] == 4  # min_chosen * steps
    assert "inrecon: warning: the hold-out rule chose step" in err and "Traceback" not in err
    assert info["holdout"]["warning"].startswith("the hold-out rule chose step")


def test_image_shape_with_an_empty_axis_is_reported_as_such():
    import torch

    from inrecon.data.scans import MRIScan
    from inrecon.errors import ShapeError

    with pytest.raises(ShapeError, match=r"image_shape \(0, 32\) has an empty axis"):
        MRIScan(
            torch.ones(2, 10, dtype=torch.complex64),
            trajectory=torch.zeros(10, 2),
            image_shape=(0, 32),
            sens_maps=torch.ones(2, 32, 32, dtype=torch.complex64),
        )


# --- 11: tracebacks -----------------------------------------------------------------------------------------------
def test_cgsense_accepts_a_checkpoint_dir(mri, tmp_path, capsys):
    assert (
        main(
            [
                "recon",
                "--method",
                "cgsense",
                str(mri),
                "-o",
                str(tmp_path / "o.h5"),
                "--checkpoint-dir",
                str(tmp_path / "ck"),
            ]
        )
        == 0
    )
    assert "Traceback" not in capsys.readouterr().err


def test_a_closed_stdout_ends_quietly_with_the_broken_pipe_status(mri):
    proc = subprocess.Popen(
        [sys.executable, "-m", "inrecon.cli", "info", str(mri)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # `| head` that has already exited
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_out_of_memory_becomes_one_line(monkeypatch, capsys, tmp_path):
    import inrecon.cli.scans as scans

    def explode(*a, **k):
        raise MemoryError

    monkeypatch.setattr(scans, "_simulate_mri", explode)
    assert main(["simulate", "--size", "32", "32", "-o", str(tmp_path / "x.h5")]) == 2
    assert "ran out of memory" in one_error_line(capsys.readouterr().err)


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recon", "--method", "zf"])
    assert exc.value.code == 2
    assert "required" in one_error_line(capsys.readouterr().err)


# --- 12: resources ------------------------------------------------------------------------------------------------
def test_memory_sizes_estimates_and_limits():
    from inrecon.errors import InreconError
    from inrecon.resources import available_memory, check_memory, estimate_field, estimate_mri, parse_size

    assert parse_size("8G") == 8 << 30 and parse_size("512M") == 512 << 20 and parse_size("1.5GiB") == 3 << 29
    assert parse_size(4096) == 4096
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(InreconError):
            parse_size(bad)
    assert available_memory() is None or available_memory() > 0
    assert estimate_mri((256, 256), 12) < 100 << 20  # the default simulation is small
    assert estimate_mri((16384, 16384), 12) > 4 << 30
    assert estimate_field((256, 256), log2_table_size=26, n_levels=16) > 16 << 30
    check_memory(1 << 20, "x", "8G")
    with pytest.raises(InreconError, match=r"needs about 2\.0 GiB.*1\.0 GiB of --max-memory"):
        check_memory(2 << 30, "x", "1G")


def test_max_memory_lets_a_large_estimate_through(tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["simulate", "--size", "32", "32", "--coils", "2", "--max-memory", "1K", "-o", str(out)]) == 2
    capsys.readouterr()
    assert main(["simulate", "--size", "32", "32", "--coils", "2", "--max-memory", "1G", "-o", str(out)]) == 0
    assert out.exists()


# --- issue 13 item 8: progress and logging ------------------------------------------------------------------------
def test_progress_modes(monkeypatch):
    from inrecon.progress import progress_mode

    monkeypatch.delenv("INRECON_PROGRESS", raising=False)
    assert progress_mode(None) == "lines"  # stderr is captured, not a terminal
    assert progress_mode(False) == "off"
    for env, mode in (("0", "off"), ("1", "bars"), ("lines", "lines")):
        monkeypatch.setenv("INRECON_PROGRESS", env)
        assert progress_mode(None) == mode
    monkeypatch.setenv("INRECON_PROGRESS", "0")
    assert progress_mode(True) == "off"


def test_progress_into_a_pipe_is_a_few_plain_lines(mri, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("INRECON_PROGRESS", raising=False)
    monkeypatch.setenv("INRECON_PROGRESS_INTERVAL", "0")  # a 15-step fit can end in well under 0.1 s
    args = ["recon", "--method", "ngp", str(mri), "-o", str(tmp_path / "o.npy")]
    over = sets(*SMALL, "steps=15", "stop=none", "prior.phase=0", "prior.tv=0", "splitting.noise=0")
    assert main([*args, *over]) == 0
    cap = capsys.readouterr()
    assert "\r" not in cap.err
    lines = cap.err.strip().splitlines()
    assert any("fit" in ln and "/15" in ln for ln in lines), cap.err
    assert len(cap.err) < 4000
    assert json.loads(cap.out)["output"].endswith("o.npy")


def test_quiet_keeps_the_json_result_and_verbose_adds_debug(mri, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INRECON_PROGRESS", "1")
    assert main(["recon", "--method", "zf", str(mri), "-o", str(tmp_path / "o.npy"), "-q"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and json.loads(cap.out)["method"] == "zf"
    monkeypatch.setenv("INRECON_PROGRESS", "0")
    assert main(["recon", "--method", "zf", str(mri), "-o", str(tmp_path / "o.npy"), "-v"]) == 0
    cap = capsys.readouterr()
    assert "inrecon: debug: memory estimate" in cap.err and "inrecon: wrote" in cap.err
    assert "\r" not in cap.err


def test_simulate_prints_a_json_result(tmp_path, capsys):
    out = tmp_path / "ct.h5"
    args = ["simulate", "--modality", "ct", "--size", "32", "32", "--views", "10", "--detectors", "48"]
    assert main([*args, "--sod", "100", "--odd", "50", "--detector-spacing", "1", "-o", str(out), "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == str(out) and result["modality"] == "ct" and result["image_shape"] == [32, 32]
