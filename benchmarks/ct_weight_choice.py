"""How well reference-free rules choose TV-CT's weight on noisy sparse-view CT (issue 10).

For each scan: the PSNR of TV-CT (PWLS-TV, the library's default data term) on a log grid of ``lam_rel`` (the
hindsight optimum; the reference is used for scoring only), then three reference-free rules:

- the library's hold-out (``lam_rel=auto``: ``--fraction`` of the views held out, by default the library's
  share, chosen as ``--split`` says, by default spread evenly over the angles; the lowest held-out loss wins),
  on the grid, for split seeds 0..S-1, each split alone and the mean of the held-out losses over all S splits;
- the discrepancy principle for scans that record their photons per ray: the weight at which the residual of
  the all-view reconstruction, weighted by the inverse Poisson variance of each reading
  (``1 / (mu^2 N0 exp(-mu y))``), has a mean square of 1.

Cases are quality-suite case names (``inrecon bench quality``; lungdx slices at 60 / 90 fan views) or HDF5 scan
files (e.g. those of ``benchmarks/independent_scans.py``).

    python benchmarks/ct_weight_choice.py --cases A0001-60-noisy A0002-60-noisy A0001-90-noisy A0002-90-noisy
    python benchmarks/ct_weight_choice.py --fraction 0.2 --cases A0001-60-noisy      # the share before 2026-12-03
    python benchmarks/ct_weight_choice.py --split random --cases A0001-60-noisy      # the split before 2026-12-03
    python benchmarks/ct_weight_choice.py --cases independent-scans/fan60.h5 independent-scans/par90.h5
    python benchmarks/ct_weight_choice.py --inverse-crime --cases A0001-60-noisy     # the CT data before 2026-12-03

Prints one JSON line per case and a summary: per rule, the weight chosen and its PSNR against the grid's best.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from inrecon import load_scan
from inrecon.experiments.bench import load_experiment
from inrecon.experiments.drivers.quality import build_case
from inrecon.metrics import evaluate
from inrecon.physics.measurement import CT_SPLITS, build_measurement
from inrecon.recon.api import run_method
from inrecon.recon.classical.ct import TVConfig

GRID = (0.001, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03)


def _scan(name: str, inverse_crime: bool = False):
    if name.endswith((".h5", ".hdf5")):
        return load_scan(name)
    cases = {c.name: c for c in load_experiment("quality").config.cases}
    if name not in cases:
        raise SystemExit(f"unknown case {name!r}: a quality-suite case ({', '.join(cases)}) or an .h5 file")
    case = cases[name]
    if inverse_crime:
        case = dataclasses.replace(case, object_grid="same", rays_per_detector=1)
    return build_case(case)


def _chi2(scan) -> Callable[[torch.Tensor], float] | None:
    """``image ->`` mean square of the raw sinogram residual over the Poisson variance of each reading, or
    ``None`` when the scan does not record its photons per ray."""
    prov = scan.provenance or {}
    photons = prov.get("photons")
    if not photons:
        return None
    mu = float(prov.get("mu_per_unit", 1.0))
    raw = build_measurement(scan, ct_weighting="none", scale="none")
    y = raw.y.double()
    var = 1.0 / (mu**2 * float(photons) * torch.exp(-mu * y))

    def chi2(image: torch.Tensor) -> float:
        r = raw.predict(image.to(raw.y.dtype)).double() - y
        return float((r.square() / var).mean())

    return chi2


def _crossing(grid: list[float], chi2: list[float]) -> float | None:
    """The weight where chi^2 first reaches 1 (log-linear interpolation), ``None`` if it never does."""
    for i in range(1, len(grid)):
        if chi2[i - 1] < 1.0 <= chi2[i]:
            t = (1.0 - chi2[i - 1]) / (chi2[i] - chi2[i - 1])
            return math.exp(math.log(grid[i - 1]) + t * (math.log(grid[i]) - math.log(grid[i - 1])))
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", required=True)
    ap.add_argument("--splits", type=int, default=5, help="hold-out split seeds 0..S-1")
    ap.add_argument(
        "--fraction",
        type=float,
        default=TVConfig().holdout_fraction,
        help=f"share of the views held out [{TVConfig().holdout_fraction}]",
    )
    ap.add_argument(
        "--split",
        choices=CT_SPLITS,
        default=TVConfig().holdout_split,
        help=f"which views are held out [{TVConfig().holdout_split}]",
    )
    ap.add_argument(
        "--inverse-crime",
        action="store_true",
        help="simulate lungdx cases from the reconstruction grid with one ray per detector (the suite before "
        "2026-12-03) instead of from the native 512 x 512 slice",
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    summary = {}
    for name in args.cases:
        t0 = time.perf_counter()
        scan = _scan(name, args.inverse_crime)
        roi = getattr(scan, "roi", None)
        psnr, chi2, residual = [], [], _chi2(scan)
        for v in GRID:
            res = run_method("tv-ct", scan, {"lam_rel": v}, show_progress=False)
            psnr.append(round(evaluate(res.image, scan.target, roi=roi)["psnr"], 2))
            chi2.append(None if residual is None else residual(res.image))
        losses = []
        for seed in range(args.splits):
            over = {
                "lam_rel": "auto",
                "seed": seed,
                "refine": False,
                "search": "grid",
                "lam_candidates": list(GRID),
                "holdout_fraction": args.fraction,
                "holdout_split": args.split,
            }
            res = run_method("tv-ct", scan, over, show_progress=False)
            scores = {float(k): v for k, v in res.info["holdout_scores"].items()}
            losses.append([scores[v] for v in GRID])
        loss = np.asarray(losses)
        best = int(np.argmax(psnr))
        single = [int(np.argmin(row)) for row in loss]
        mean = int(np.argmin(loss.mean(0)))
        row = {
            "case": name,
            "grid": dict(zip(GRID, psnr)),
            "best": {"lam_rel": GRID[best], "psnr": psnr[best]},
            "holdout_splits": [{"lam_rel": GRID[i], "psnr": psnr[i]} for i in single],
            "holdout_mean": {"lam_rel": GRID[mean], "psnr": psnr[mean]},
            # held-out loss of each grid weight relative to that of the best weight, mean over the splits
            "loss_vs_best": dict(zip(GRID, np.round((loss / loss[:, best : best + 1]).mean(0), 3).tolist())),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if chi2[0] is not None:
            row["chi2"] = dict(zip(GRID, [round(c, 3) for c in chi2]))
            lam = _crossing(list(GRID), chi2)
            if lam is not None:
                near = int(np.argmin([abs(math.log(g / lam)) for g in GRID]))
                row["discrepancy"] = {"lam_rel": round(lam, 4), "nearest_grid_psnr": psnr[near]}
        print(json.dumps(row), flush=True)
        mean_single = float(np.mean([psnr[i] for i in single]))
        summary[name] = {
            "best": f"{psnr[best]} ({GRID[best]:g})",
            "holdout, single split (mean over seeds)": round(mean_single - psnr[best], 2),
            "holdout, mean of splits": round(psnr[mean] - psnr[best], 2),
        }
        if "discrepancy" in row:
            summary[name]["discrepancy (nearest grid weight)"] = round(
                row["discrepancy"]["nearest_grid_psnr"] - psnr[best], 2
            )
    env = {
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    held = {"fraction": args.fraction, "split": args.split, "seeds": args.splits}
    out = {"summary (dB against the grid's best)": summary, "hold-out": held, "environment": env}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
