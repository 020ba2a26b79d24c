"""NGP on the quality suite's CT cases with the image modelled on the scan's grid and on a 2x finer one
(``data.ct_supersample`` 1 vs 2), TV-CT (its default, the 2x finer grid) beside them: PSNR, chosen steps and
seconds per fit, on the device you name. The finer grid costs four times the pixels; this measures what that
costs in time where it runs (the quality comparison on the CPU is in RESULTS.md, "Modelling the image on a
finer grid").

    python benchmarks/ct_supersample.py --device cuda [--half tuning|confirmation|all] [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from inrecon.experiments.bench import load_experiment
from inrecon.experiments.drivers.quality import build_case
from inrecon.metrics import evaluate
from inrecon.recon.api import run_method
from inrecon.report.core import collect_environment
from inrecon.runtime import resolve_device

RUNS = [
    ("tv-ct", "tv-ct", {}),
    ("ngp k=1", "ngp", {"data.ct_supersample": 1}),
    ("ngp k=2", "ngp", {"data.ct_supersample": 2}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--half", choices=("tuning", "confirmation", "all"), default="all")
    ap.add_argument(
        "--cases", nargs="*", help="case names (default: every lungdx and SCOPE case of the half)"
    )
    ap.add_argument(
        "--runs", nargs="*", default=[r[0] for r in RUNS], help="which of: " + ", ".join(r[0] for r in RUNS)
    )
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cases = [
        c
        for c in load_experiment("quality").config.cases
        if c.source in ("lungdx", "scope") and args.half in ("all", c.half)
    ]
    if args.cases:
        cases = [c for c in cases if c.name in args.cases]
    rows = []
    for case in cases:
        scan = build_case(case).to(dev)
        for label, method, over in RUNS:
            if label not in args.runs:
                continue
            torch.manual_seed(0)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = run_method(method, scan, over, show_progress=False)
            m = evaluate(torch.as_tensor(res.image).cpu(), scan.target.cpu(), roi=getattr(scan, "roi", None))
            row = {
                "case": case.name,
                "half": case.half,
                "run": label,
                "psnr": round(m["psnr"], 2),
                "seconds": round(time.perf_counter() - t0, 1),
                "chosen_steps": res.info.get("chosen_steps"),
                "cuda_graph": res.info.get("cuda_graph"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        json.dumps(
            {"device": str(dev), "environment": collect_environment(device=str(dev)), "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
