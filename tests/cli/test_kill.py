"""``kill -9`` in the middle of ``inrecon recon`` and ``inrecon tune``: the rerun of the same command resumes
and gives a bit-identical result to an uninterrupted run, and leaves no temporary or checkpoint file behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli.tiny_files import mri_file

SMALL = ["n_levels=6", "log2_table_size=10", "mlp_layers=2", "mlp_width=32", "eval_every=10"]
ENV = {**os.environ, "INRECON_PROGRESS": "0"}


def _sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "inrecon.cli", *args]


def _run(*args: str) -> None:
    proc = subprocess.run(_cli(*args), capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr


def _kill_when(args: list[str], ready, timeout: float = 300) -> None:
    """Start the command, SIGKILL it as soon as ``ready()`` holds; asserts it was killed mid-run."""
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.monotonic()
    while not ready() and proc.poll() is None and time.monotonic() - t0 < timeout:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"


def _timeless(obj):
    """``obj`` without its wall times (keys naming seconds or times), at any depth."""
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if "second" not in k and "time" not in k}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*") if p.is_file())


@pytest.mark.slow
def test_recon_killed_mid_run_resumes_to_the_identical_image(tmp_path):
    scan = mri_file(tmp_path / "mri.h5")
    ck = tmp_path / "ck"
    base = ["recon", "--method", "ngp", str(scan), "-q"]
    base += _sets(*SMALL, "steps=150", "patience=30", "min_steps=20", "checkpoint_every=10")
    _run(*base, "-o", str(tmp_path / "ref.npy"))
    # the MRI prior search checkpoints each candidate's stage in its own sub-folder (ck/phase0_tv0/holdout.pt)
    _kill_when(
        [*base, "-o", str(tmp_path / "out.npy"), "--checkpoint-dir", str(ck)],
        lambda: any(ck.rglob("holdout.pt")),
    )
    assert not (tmp_path / "out.npy").exists()
    _run(*base, "-o", str(tmp_path / "out.npy"), "--checkpoint-dir", str(ck))
    ref, out = np.load(tmp_path / "ref.npy"), np.load(tmp_path / "out.npy")
    assert ref.tobytes() == out.tobytes()
    assert not ck.exists() and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_tune_killed_mid_run_resumes_to_the_identical_choice(tmp_path):
    scan = mri_file(tmp_path / "mri.h5")
    base = ["tune", str(scan), "--random", "3", "--guided", "0", "--steps", "30", "--patience", "10", "-q"]
    base += _sets(*SMALL)
    _run(*base, "-o", str(tmp_path / "ref.json"))
    log = tmp_path / "out.trials.jsonl"

    def one_trial_logged() -> bool:
        return log.exists() and len(log.read_text().splitlines()) >= 1

    _kill_when([*base, "-o", str(tmp_path / "out.json")], one_trial_logged)
    assert not (tmp_path / "out.json").exists()
    _run(*base, "-o", str(tmp_path / "out.json"))
    ref, out = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ref", "out"))
    for key in ("hparams", "tuned", "score", "trials"):
        assert ref[key] == out[key], key
    ref_log = [json.loads(ln) for ln in (tmp_path / "ref.trials.jsonl").read_text().splitlines()]
    out_log = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert _timeless(ref_log) == _timeless(out_log)
    assert _leftovers(tmp_path) == []


def _checkpoint_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def test_recon_terminated_saves_its_step_and_resumes_to_the_identical_image(tmp_path):
    """SIGTERM (a scheduler's kill): the run writes its checkpoint at the end of the running step, removes its
    temporary files and exits 143 naming the signal and how to resume; the rerun gives the identical image."""
    scan = mri_file(tmp_path / "mri.h5")
    ck = tmp_path / "ck"
    base = ["recon", "--method", "ngp", str(scan), "-q"]
    # one hold-out stage (no prior search) that never stops early, periodic checkpoints at steps 400 and 800:
    # a checkpoint at a step between them can only be the interrupt's
    base += _sets(
        *SMALL, "steps=1200", "patience=1200", "prior.tv=0", "prior.phase=0", "checkpoint_every=400"
    )
    _run(*base, "-o", str(tmp_path / "ref.npy"))
    args = [*base, "-o", str(tmp_path / "out.npy"), "--checkpoint-dir", str(ck)]
    proc = subprocess.Popen(
        _cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True
    )
    t0 = time.monotonic()
    while not (ck / "holdout.pt").exists() and proc.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.01)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and f"--checkpoint-dir {ck} resumes" in err, err
    assert not (tmp_path / "out.npy").exists()
    assert 400 < _checkpoint_step(ck / "holdout.pt") < 800
    assert _leftovers(tmp_path) == []
    _run(*base, "-o", str(tmp_path / "out.npy"), "--checkpoint-dir", str(ck))
    ref, out = np.load(tmp_path / "ref.npy"), np.load(tmp_path / "out.npy")
    assert ref.tobytes() == out.tobytes()
    assert not ck.exists()
