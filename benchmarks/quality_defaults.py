"""The scan-specific INR's per-modality defaults, old vs new, against the best classical method, on the cases of
the quality suite (``inrecon bench quality``'s case list, ``src/inrecon/configs/bench/quality.json``).

The new defaults (``inrecon.recon.inr.ngp.NGP_MODALITY_DEFAULTS``) were chosen on the suite's tuning half; this
script reports them on the half you ask for (``--half confirmation`` is the honest number). For every case it
runs the classical references of the suite (every weight by hold-out), NGP with the old defaults (the config
dataclass's own values, i.e. the modality defaults undone) and NGP with the new ones, and prints JSON: PSNR,
SSIM, seconds and the chosen step count per method, the best classical method and each INR's margin over it.

    python benchmarks/quality_defaults.py --half confirmation --modality ct
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from inrecon.config import build_config
from inrecon.experiments.bench import load_experiment
from inrecon.experiments.drivers.quality import CLASSICAL, QualityCase, build_case
from inrecon.metrics import evaluate
from inrecon.recon.api import run_method
from inrecon.recon.inr.ngp import NGP_MODALITY_DEFAULTS, NGPConfig


def old_defaults(modality: str) -> dict:
    """Overrides that undo the modality defaults: the dataclass's own values for the same keys."""
    base = build_config(NGPConfig, {})
    out = {}
    for key in NGP_MODALITY_DEFAULTS.get(modality, {}):
        obj = base
        for part in key.split("."):
            obj = getattr(obj, part)
        out[key] = obj
    return out


def score(scan, image) -> dict:
    mri = scan.modality == "mri"
    m = evaluate(image, scan.target, roi=getattr(scan, "roi", None), scale=mri)
    return {"psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 3)}


def run_case(case: QualityCase) -> dict:
    scan = build_case(case)
    runs = [(r.label, r.method, r.overrides) for r in CLASSICAL["mri" if scan.modality == "mri" else "ct"]]
    runs += [("NGP old defaults", "ngp", old_defaults(scan.modality)), ("NGP new defaults", "ngp", {})]
    rows = {}
    for label, method, over in runs:
        t0 = time.perf_counter()
        res = run_method(method, scan, over, show_progress=False)
        rows[label] = {**score(scan, res.image), "seconds": round(time.perf_counter() - t0, 1)}
        if "chosen_steps" in res.info:
            rows[label]["chosen_steps"] = res.info["chosen_steps"]
        print(json.dumps({"case": case.name, "method": label, **rows[label]}), flush=True)
    classical = {k: v for k, v in rows.items() if not k.startswith("NGP")}
    best = max(classical, key=lambda k: classical[k]["psnr"])
    return {
        "rows": rows,
        "best_classical": best,
        "margin_old": round(rows["NGP old defaults"]["psnr"] - rows[best]["psnr"], 2),
        "margin_new": round(rows["NGP new defaults"]["psnr"] - rows[best]["psnr"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half", choices=("tuning", "confirmation"), default="confirmation")
    ap.add_argument("--modality", choices=("mri", "ct", "all"), default="all")
    ap.add_argument("--cases", nargs="*", help="case names (default: every case of the half)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [c for c in load_experiment("quality").config.cases if c.half == args.half]
    ct_sources = ("lungdx", "scope")
    if args.modality != "all":
        cases = [c for c in cases if (c.source in ct_sources) == (args.modality == "ct")]
    if args.cases:
        cases = [c for c in cases if c.name in args.cases]
    out = {
        "what": "NGP old vs new per-modality defaults vs the classical references (hold-out weights)",
        "half": args.half,
        "new_defaults": NGP_MODALITY_DEFAULTS,
        "threads": args.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, CPU",
        "cases": {c.name: run_case(c) for c in cases},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
