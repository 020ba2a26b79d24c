"""CT data term for INR fitting: raw sinogram loss vs the ramp-preconditioned one (``CTProblem``).

lungdx A0001 slice (HU [-800, 400] -> [0, 1], a chest phantom when the data is absent) at ``--size``, the DisINR
fan geometry scaled to the grid, ``--views`` views over 360 degrees, noise-free. NGP (library defaults except
the grid options below), a fixed number of steps without stopping, PSNR every 100 steps; FBP for reference.

    python benchmarks/ct_precondition.py [--size 96] [--views 60] [--steps 800] [--lrs 3e-3 1e-2]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from inrecon.data import shared
from inrecon.data.phantoms import body_ct_phantom
from inrecon.metrics import evaluate
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.recon.api import run_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--views", type=int, default=60)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--slice", type=int, default=32)
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2])
    ap.add_argument("--grid", default="n_levels=12,log2_table_size=14", help="NGP overrides, k=v,k=v")
    args = ap.parse_args()
    if shared.available(shared.LUNGDX_A0001):
        img, data = shared.lungdx_slices("A0001", indices=[args.slice], size=args.size)[0], "lungdx A0001"
    else:
        img, data = body_ct_phantom((args.size, args.size), seed=0), "body phantom"
    scan = simulate_ct(img, shared.disinr_fan_geometry(img.shape), full_scan_angles(args.views))
    grid = {k: int(v) for k, v in (kv.split("=") for kv in args.grid.split(",") if kv)}
    rows = [
        {
            "method": "fbp",
            "psnr": evaluate(run_method("fbp", scan, {}, show_progress=False).image, scan.target)["psnr"],
        }
    ]
    for pre in ("none", "ramp"):
        for lr in args.lrs:
            over = {
                **grid,
                "steps": args.steps,
                "stop": "none",
                "eval_every": 100,
                "lr": lr,
                "ct_precondition": pre,
            }
            res = run_method("ngp", scan, over, show_progress=False)
            h = res.info["history"]
            row = {
                "method": "ngp",
                "ct_precondition": pre,
                "lr": lr,
                "psnr_curve": list(zip(h["eval_step"], h["psnr"])),
            }
            row["psnr"] = evaluate(res.image, scan.target)["psnr"]
            rows.append(row)
            print(f"{pre:>5s} lr={lr:g}: final {row['psnr']:.2f} dB", flush=True)
    print(
        json.dumps(
            {
                "benchmark": "ct_precondition",
                "data": data,
                "size": args.size,
                "views": args.views,
                "steps": args.steps,
                "cpu": platform.machine(),
                "threads": torch.get_num_threads(),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
