"""Tiny scan files for command-line tests (made in well under a second), and file checksums."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from inrecon.data.io.hdf5 import write_scan
from inrecon.data.phantoms import body_ct_phantom
from inrecon.data.scans import CTGeometry
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.series import simulate_series
from tests.inr_fixtures import tiny_mri


def mri_file(path: Path, *, n_coils: int = 4, seed: int = 0, target: bool = True) -> Path:
    """A 32x32 Cartesian MRI scan (given coil maps, AF 3 with 8 centre lines) with or without a target."""
    scan = tiny_mri(seed=seed, n_coils=n_coils)
    if not target:
        scan = dataclasses.replace(scan, target=None)
    write_scan(path, scan)
    return path


def ct_geometry(size: int = 32) -> CTGeometry:
    return CTGeometry("fan", 48, 1.0, (size, size), 1.0, 100.0, 50.0)


def ct_file(path: Path, *, views: int = 20, degrees: bool = False) -> Path:
    """A 32x32 fan-beam CT scan of the body phantom; ``degrees``: angles stored in degrees (a user mistake)."""
    geom = ct_geometry()
    scan = simulate_ct(body_ct_phantom((32, 32), seed=0), geom, full_scan_angles(views, "fan"))
    write_scan(path, scan)
    if degrees:
        with h5py.File(path, "a") as f:
            a = f["angles"][()]
            del f["angles"]
            f["angles"] = np.rad2deg(a).astype(np.float32)
    return path


def transposed_mri_file(path: Path) -> Path:
    """:func:`mri_file` with k-space and mask transposed but the coil maps not (an axis-order mistake)."""
    mri_file(path)
    with h5py.File(path, "a") as f:
        k, m = f["kspace"][()], f["mask"][()]
        del f["kspace"], f["mask"]
        f["kspace"] = np.ascontiguousarray(k.transpose(0, 2, 1))
        f["mask"] = np.ascontiguousarray(m.T)
    return path


def series_file(path: Path) -> Path:
    """A 3-frame 32x32 real-time series."""
    write_scan(path, simulate_series(n_frames=3, shape=(32, 32), af=4, n_coils=2, acs=8))
    return path


def hparams_file(path: Path) -> Path:
    path.write_text(json.dumps({"method": "ngp", "hparams": {"lr": 0.01}, "protocol": {}}))
    return path


def checksums(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (links followed), and every folder."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "<dir>"
    return out


def one_error_line(err: str) -> str:
    """The single ``inrecon: error: ... Fix: ...`` line of ``err`` (asserts there is exactly one line)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("inrecon: error: "), err
    assert "Fix: " in lines[0], err
    assert "Traceback" not in err
    return lines[0]


__all__ = [
    "checksums",
    "ct_file",
    "ct_geometry",
    "hparams_file",
    "mri_file",
    "one_error_line",
    "series_file",
    "transposed_mri_file",
]
