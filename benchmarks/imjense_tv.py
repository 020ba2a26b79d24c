"""Calibrate IMJENSE's TV weight (it estimates its own coil maps): PSNR of the hold-out-stopped reconstruction for several weights.

Scans: the real 8-coil brain (``mri/brain8ch_bart/ksp``, Poisson 12.7 %, scored against ``img`` in the coil-map
support) and the real T1 slice under simulated 12-coil 1D Cartesian AF 6 with 24 ACS lines at 30 dB. The
IMJENSE default is the weight that does best on both; the reference is used for scoring only.

    python benchmarks/imjense_tv.py [--weights 0 1e-4 1e-3 1e-2] [--scans brain dipy6]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from inrecon.data import shared
from inrecon.data.sampling import cartesian_1d
from inrecon.metrics import evaluate
from inrecon.physics.coils import with_espirit_support
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.api import run_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1e-4, 1e-3, 1e-2])
    ap.add_argument("--scans", nargs="+", default=["brain", "dipy6"])
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    scans = {}
    if "brain" in args.scans:
        scans["brain8ch"] = with_espirit_support(shared.brain8ch())
    if "dipy6" in args.scans:
        img = shared.dipy_t1()
        scans["dipy-AF6"] = simulate_mri(
            img, n_coils=12, mask=cartesian_1d(img.shape, 6, acs=24), snr_db=30, seed=0
        )
    rows = []
    for label, scan in scans.items():
        for w in args.weights:
            t0 = time.perf_counter()
            res = run_method("imjense", scan, {"tv_weight": w, "steps": args.steps}, show_progress=False)
            m = evaluate(res.image, scan.target, roi=scan.roi, scale=True)
            row = {"scan": label, "tv_weight": w, **m, "seconds": time.perf_counter() - t0}
            row["chosen_steps"] = res.info.get("chosen_steps")
            rows.append(row)
            print(
                f"{label:>10s} tv={w:g}: PSNR {m['psnr']:.2f} SSIM {m['ssim']:.4f} {row['seconds']:.0f} s",
                flush=True,
            )
    print(
        json.dumps(
            {
                "benchmark": "imjense_tv",
                "cpu": platform.machine(),
                "threads": torch.get_num_threads(),
                "rows": rows,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
