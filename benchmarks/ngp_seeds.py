"""NGP over several seeds on one scan: how far the seed (initial weights and hold-out split) moves the result, what
the hold-out rule chose, and how close its step came to the hindsight peak.

The scan is ``dipy128`` (the DisINR MRI benchmark's: the dipy T1 slice block-averaged to 128 x 128, 12 simulated
coils, 12 ACS lines, 30 dB, noise seed 100, ``--af`` / ``--pattern``; PSNR of the magnitude against the slice's
magnitude, as ``disinr_mri_dipy.py`` reports it) or a case of the quality suite by name
(``src/inrecon/configs/bench/quality.json``; PSNR the papers' way, as ``run_comparison`` scores the suite). ``--set`` overrides
NGP's config for every seed (``stop.smooth=0.9``, ``stop.patience=0``, ``prior.phase=0.003``, ...).

One JSON line per seed: the PSNR, the chosen step count, the prior weights the hold-out chose and their scores,
and the stage-1 curve's check against hindsight (``stage1_at_chosen`` / ``stage1_peak``, ``stage1_peak_step``: the
PSNR of the model trained on the training part, evaluated every 50 steps, at the chosen step and at its best; in
the evaluator's units, i.e. a complex image scaled to the reference). Then the mean. 1 thread.

    python benchmarks/ngp_seeds.py --seeds 0 1 2 3 --af 8 --pattern poisson --set stop.patience=0
    python benchmarks/ngp_seeds.py --scan brain8ch --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from inrecon.cli.common import parse_sets
from inrecon.errors import InreconError
from inrecon.experiments.bench import load_experiment
from inrecon.experiments.drivers.populations import dipy_test_scan
from inrecon.experiments.drivers.quality import build_case
from inrecon.metrics import evaluate
from inrecon.recon.api import run_method

# what the hold-out chose besides the step count
CHOSEN = ("prior_tv", "prior_phase", "prior_scores", "phase_roughness")


def stage1_check(info: dict) -> dict:
    """The stage-1 PSNR at the chosen step and at its peak (nearest evaluated steps)."""
    hist = (info.get("holdout") or {}).get("history") or {}
    pairs = [(s, p) for s, p in zip(hist.get("eval_step", []), hist.get("psnr", [])) if math.isfinite(p)]
    chosen = info.get("chosen_steps")
    if not pairs or chosen is None:
        return {}
    peak_step, peak = max(pairs, key=lambda sp: sp[1])
    at = min(pairs, key=lambda sp: abs(sp[0] - chosen))[1]
    return {"stage1_at_chosen": round(at, 2), "stage1_peak": round(peak, 2), "stage1_peak_step": peak_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", default="dipy128", help="dipy128, or a quality-suite case name")
    ap.add_argument("--af", type=float, default=6.0, help="dipy128: acceleration")
    ap.add_argument(
        "--pattern", choices=("cartesian", "poisson", "radial"), default="cartesian", help="dipy128: sampling"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--set", action="append", default=[], help="NGP config key=value, for every seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    over = parse_sets(args.set)
    if args.scan == "dipy128":
        try:
            scan = dipy_test_scan(128, args.af, args.pattern)
        except InreconError as e:
            raise SystemExit(str(e)) from None
    else:
        cases = {c.name: c for c in load_experiment("quality").config.cases}
        if args.scan not in cases:
            raise SystemExit(f"unknown scan {args.scan!r}: dipy128 or one of {sorted(cases)}")
        scan = build_case(cases[args.scan])
    psnrs = []
    for seed in args.seeds:
        res = run_method("ngp", scan, {**over, "seed": seed}, show_progress=False)
        info, img = res.info, res.image.detach().cpu()
        if args.scan == "dipy128":
            psnr = evaluate(img.abs(), scan.target.abs().cpu())["psnr"]
        else:  # as run_comparison scores it (the suite's tables)
            roi = None if scan.roi is None else scan.roi.cpu()
            psnr = evaluate(img, scan.target.cpu(), roi=roi, scale=scan.modality == "mri")["psnr"]
        psnrs.append(psnr)
        seconds = info["seconds"]
        chosen = {k: info[k] for k in CHOSEN if k in info}
        row = {"scan": args.scan, "seed": seed, "set": over, "psnr": round(psnr, 2)}
        row |= {"chosen_steps": info.get("chosen_steps"), **chosen, **stage1_check(info)}
        print(json.dumps({**row, "seconds": round(seconds, 1)}), flush=True)
    if len(psnrs) > 1:
        print(
            json.dumps(
                {"scan": args.scan, "seeds": args.seeds, "mean_psnr": round(sum(psnrs) / len(psnrs), 2)}
            )
        )


if __name__ == "__main__":
    main()
