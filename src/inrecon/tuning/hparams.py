"""Tuned-hyperparameter files and what identifies a scan's protocol.

:func:`save_hparams` writes ``{"method", "hparams", "tuned", "protocol", "score", "oracle", "trials", "created",
"inrecon_version"}``. ``hparams`` are config overrides of the tuned method (dotted keys, e.g. ``optim.lr``; files
written with the short flat keys, ``lr``, read the same): ``inrecon recon --method M --hparams H.json`` on the
tuned scan reproduces the tuned reconstruction, and on another scan of the same protocol transfers it
(:func:`protocol_mismatches` warns when the protocols differ).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from inrecon import __version__
from inrecon.data.atomic import atomic_path
from inrecon.data.scans import CTScan, MRIScan, VolumeScan
from inrecon.errors import InreconError

__all__ = [
    "load_hparams",
    "protocol_mismatches",
    "save_hparams",
    "scan_identity",
    "scan_protocol",
    "update_digest",
]


def update_digest(sha, x) -> None:
    """Add an array or tensor (its dtype, shape and bytes; bfloat16 too) or ``None`` to the hash ``sha``."""
    if x is None:
        sha.update(b"-")
        return
    if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16:  # numpy has no bfloat16: its raw bytes
        t = x.detach().cpu().contiguous()
        sha.update(str(("bfloat16", tuple(t.shape))).encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    sha.update(str((a.dtype.str, a.shape)).encode())
    sha.update(np.ascontiguousarray(a).tobytes())


def scan_identity(scan) -> str:
    """A short hash of everything measured in ``scan`` (data, sampling, geometry, coil maps; a volume's voxels)."""
    sha = hashlib.sha256()
    sha.update(scan.modality.encode())

    def add(x) -> None:
        update_digest(sha, x)

    if isinstance(scan, VolumeScan):
        add(scan.volume)
    elif isinstance(scan, MRIScan):
        for x in (scan.kspace, scan.mask, scan.trajectory, scan.dcf, scan.sens_maps):
            add(x)
        sha.update(str(tuple(scan.image_shape)).encode())
    elif isinstance(scan, CTScan):
        add(scan.sinogram)
        add(scan.angles)
        sha.update(json.dumps(scan.geometry.to_attrs(), default=str, sort_keys=True).encode())
    else:
        raise InreconError(f"cannot tune on a {type(scan).__name__}", "pass an MRI or CT scan")
    return sha.hexdigest()[:16]


def scan_protocol(scan) -> dict:
    """What identifies a scan's protocol, for hyperparameter files (modality, grid, sampling, coils, views)."""
    if isinstance(scan, MRIScan):
        prov = scan.provenance or {}
        d = {
            "modality": "mri",
            "image_shape": list(scan.image_shape),
            "sampling": "cartesian" if scan.is_cartesian else "non-cartesian",
            "acceleration": round(float(scan.acceleration), 3),
            "coils": scan.n_coils,
        }
        for k in ("pattern", "contrast", "anatomy"):
            if k in prov:
                d[k] = prov[k]
        return d
    if isinstance(scan, CTScan):
        g = scan.geometry
        return {
            "modality": "ct",
            "image_shape": list(scan.image_shape),
            "geometry": g.kind,
            "views": scan.n_views,
            "detectors": g.n_detectors,
        }
    raise InreconError(f"cannot describe a {type(scan).__name__}", "pass an MRI or CT scan")


# --- ngp ------------------------------------------------------------------------------------------------------
def save_hparams(path: str | os.PathLike, record: dict, protocol: dict) -> Path:
    """Write tuned hyperparameters atomically: ``record`` holds ``method``, ``hparams``, ``tuned`` (the best
    point), ``score``, ``oracle`` and ``trials`` (as :meth:`inrecon.tuning.run.Tuned.record` gives them)."""
    missing = [k for k in ("method", "hparams") if k not in record]
    if missing:
        raise InreconError(
            f"cannot save hyperparameters without {missing}", "pass the record of a tuning run"
        )
    rec = {**record, "protocol": dict(protocol)}
    rec["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    rec["inrecon_version"] = __version__
    path = Path(path)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    return path


def load_hparams(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_hparams` (checked: a JSON object with ``method`` and ``hparams``)."""
    p = Path(path)
    if not p.is_file():
        raise InreconError(
            f"hyperparameter file {str(p)!r} does not exist", "check the path (from `inrecon tune`)"
        )
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InreconError(
            f"hyperparameter file {str(p)!r} is not valid JSON ({exc.__class__.__name__})",
            "give the file written by `inrecon tune`",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hparams"), dict) or "method" not in data:
        raise InreconError(
            f"{str(p)!r} is not a hyperparameter file (needs 'method' and an 'hparams' object)",
            "give the file written by `inrecon tune`",
        )
    return data


def protocol_mismatches(record: dict, scan) -> list[str]:
    """Differences between the protocol an hparams ``record`` was tuned on and ``scan``'s (empty if none)."""
    want, have = record.get("protocol", {}), scan_protocol(scan)
    out = []
    for k in ("modality", "image_shape", "sampling", "coils", "geometry", "views"):
        if k in want and k in have and want[k] != have[k]:
            out.append(f"{k}: tuned on {want[k]}, scan has {have[k]}")
    a, b = want.get("acceleration"), have.get("acceleration")
    if a and b and abs(a - b) / a > 0.1:
        out.append(f"acceleration: tuned on {a}, scan has {b}")
    return out
