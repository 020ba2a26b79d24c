"""DisINR on the real 8-coil brain (issue 11's MRI target), against NGP and the classical references, in one run.

Pre-trains DisINR on ``--n-pretrain`` simulated T2-like brain phantoms on the real scan's own grid (180 x 230),
with its coil count, a Poisson-disc mask at its acceleration and 30 dB noise -- as the real-brain section of
``inrecon bench mri_undersampled`` does; no image of the real scan is used -- then reconstructs the real scan
with every method of ``--methods`` (library defaults, reference-free choices) and scores it the papers' way
(magnitude, least-squares scale, in the coil-map support).

    python benchmarks/disinr_mri_brain.py --n-pretrain 12 --pretrain-steps 1000 --output brain.safetensors
    python benchmarks/disinr_mri_brain.py --model brain.safetensors --methods disinr --set stop.min_chosen=0.02
    python benchmarks/disinr_mri_brain.py --pretrain-set augment.mirror=true --pretrain-set augment.conjugate=true

Prints one JSON line per method and a JSON summary (PSNR / SSIM, seconds, the hold-out's choice).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from inrecon.cli.common import parse_sets
from inrecon.data import shared
from inrecon.data.paths import data_root
from inrecon.experiments.drivers.populations import MRISimulation, mri_pretrain_images, mri_scans
from inrecon.experiments.runner import MethodRun, run_comparison
from inrecon.physics.coils import with_espirit_support
from inrecon.recon.api import pretrain


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-pretrain", type=int, default=12, help="simulated phantoms pre-trained on")
    ap.add_argument("--pretrain-steps", type=int, default=1000)
    ap.add_argument("--pretrain-set", action="append", default=[], help="pre-training config key=value")
    ap.add_argument(
        "--pretrain-images",
        help="pre-train on these images instead of the phantoms: a .npy stack (N, 180, 230), magnitudes",
    )
    ap.add_argument("--model", help="reuse this pre-trained model (else pre-train and write --output)")
    ap.add_argument("--output", default="disinr_brain.safetensors")
    ap.add_argument("--methods", nargs="*", default=["l1wavelet", "tv", "ngp", "disinr"])
    ap.add_argument("--set", action="append", default=[], help="DisINR adaptation key=value")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not shared.available(shared.BRAIN8CH):
        raise SystemExit(f"the real 8-coil brain is not in {data_root()} (set INRECON_DATA)")

    scan = with_espirit_support(shared.brain8ch())
    out: dict = {
        "data": "brain8ch (real, 8 coils, Poisson)",
        "methods": args.methods,
        "threads": args.threads,
    }
    model = args.model
    if model is None and "disinr" in args.methods:
        shape = tuple(scan.kspace.shape[-2:])
        af = float(scan.mask.numel() / scan.mask.sum())
        phantoms = mri_pretrain_images(shape, args.n_pretrain, args.pretrain_images)
        scans = mri_scans(
            phantoms, MRISimulation(), af, pattern="poisson", coils=scan.kspace.shape[0], acs=24
        )
        over = {
            "steps": args.pretrain_steps,
            "seed": 0,
            **parse_sets(args.pretrain_set),
        }  # strings: configs convert
        t0 = time.perf_counter()
        model = str(pretrain("disinr", scans, args.output, over))
        out["pretrain"] = {
            "phantoms": args.pretrain_images or args.n_pretrain,
            "overrides": over,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps({"pretrain": out["pretrain"]}), flush=True)
    adapt = parse_sets(args.set)
    out["adaptation_overrides"] = adapt
    runs = [
        MethodRun(m, m, adapt if m == "disinr" else {}, model if m == "disinr" else None)
        for m in args.methods
    ]
    comp = run_comparison([("brain8ch", scan)], runs, show_progress=False, log=None)
    out["results"] = []
    for r in comp.results:
        row = {
            "method": r.label,
            "psnr": round(r.metrics["psnr"], 2),
            "ssim": round(r.metrics["ssim"], 4),
            "seconds": round(r.seconds, 1),
            "holdout": {
                k: v for k, v in (r.info.get("holdout") or {}).items() if k in ("best_step", "steps_run")
            },
        }
        # freeze=auto: the way the held-out loss chose, and every way's loss (where the comparison kept them)
        # and the prior weights the hold-out chose, with the held-out loss of every setting it tried
        keys = ("candidate", "candidate_scores", "prior_phase", "prior_tv", "prior_scores")
        row.update({k: r.info[k] for k in keys if k in r.info})
        out["results"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
