"""The scan-specific INR (NGP, library defaults, hold-out stopping rule) against the classical references.

Cases (each optional, ``--cases``):
- ``brain``: the real 8-coil brain (Poisson 12.7 %), scored against the fully sampled reference in the coil-map
  support; references CG-SENSE, L1-wavelet, TV with weights chosen by k-space hold-out (no reference).
- ``dipy6``: the real T1 slice, simulated 12-coil 1D Cartesian AF 6 with 24 ACS lines, 30 dB.
- ``ct90``: lungdx A0001 slices (HU [-800, 400] -> [0, 1], 256 x 256), DisINR fan geometry, 90 views; FBP, SART, TV.
- ``volume``: 3D fitting of a 256 x 256 x D sub-volume of the same CT: PSNR after ``--volume-steps`` steps.

    python benchmarks/inr_quality.py --cases brain dipy6 ct90 volume
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from inrecon.data import shared
from inrecon.data.sampling import cartesian_1d
from inrecon.data.scans import VolumeScan
from inrecon.metrics import evaluate
from inrecon.physics.coils import with_espirit_support
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.api import run_method


def score(scan, image) -> dict:
    return evaluate(image, scan.target, roi=scan.roi, scale=scan.modality == "mri")


def run_case(scan, methods: list[tuple[str, dict]], label: str, log) -> list[dict]:
    rows = []
    for name, over in methods:
        t0 = time.perf_counter()
        res = run_method(name, scan, over, show_progress=False)
        m = score(scan, res.image)
        row = {"case": label, "method": name, **m, "seconds": time.perf_counter() - t0}
        for k in ("chosen_steps", "iters_chosen", "lam", "steps_run"):
            if k in res.info:
                row[k] = res.info[k]
        if name == "ngp" and "history" in res.info and res.info["history"].get("psnr"):
            hist = res.info["history"]
            row["psnr_during_fit"] = list(zip(hist["eval_step"], hist["psnr"]))[-5:]
        rows.append(row)
        log(
            f"{label:>12s} {name:>10s}: PSNR {m['psnr']:6.2f}  SSIM {m['ssim']:.4f}  {row['seconds']:7.1f} s "
            + " ".join(f"{k}={row[k]}" for k in ("chosen_steps", "iters_chosen", "lam") if k in row)
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["brain", "dipy6", "ct90", "volume"])
    ap.add_argument("--ct-slices", type=int, nargs="+", default=[16, 32, 48])
    ap.add_argument("--volume-depth", type=int, default=32)
    ap.add_argument("--volume-steps", type=int, default=500)
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)  # noqa: E731
    rows = []
    mri = [("zf", {}), ("cgsense", {}), ("l1wavelet", {"lam": "auto"}), ("tv", {"lam": "auto"}), ("ngp", {})]
    if "brain" in args.cases:
        rows += run_case(with_espirit_support(shared.brain8ch()), mri, "brain8ch", log)
    if "dipy6" in args.cases:
        img = shared.dipy_t1()
        scan = simulate_mri(img, n_coils=12, mask=cartesian_1d(img.shape, 6, acs=24), snr_db=30, seed=0)
        rows += run_case(scan, mri, "dipy-AF6", log)
    if "ct90" in args.cases:
        slices = shared.lungdx_slices("A0001", indices=args.ct_slices)
        geom = shared.disinr_fan_geometry(slices[0].shape)
        for i, img in zip(args.ct_slices, slices):
            scan = simulate_ct(img, geom, full_scan_angles(90))
            rows += run_case(scan, [("fbp", {}), ("sart", {}), ("tv", {}), ("ngp", {})], f"ct90-s{i}", log)
    if "volume" in args.cases:
        vol = shared.lungdx_slices("A0001")[16 : 16 + args.volume_depth]
        scan = VolumeScan(volume=vol)
        rows += run_case(scan, [("ngp", {"steps": args.volume_steps, "eval_every": 50})], "volume", log)
    print(
        json.dumps(
            {
                "benchmark": "inr_quality",
                "cpu": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(),
                "rows": rows,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
