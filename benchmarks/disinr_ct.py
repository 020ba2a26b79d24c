"""DisINR on noisy sparse-view CT at this CPU's budget (issue 11), against NGP and the classical references.

Pre-trains DisINR on ``--n-pretrain`` lungdx A0001 slices from their raw simulated sinograms (fan beam, DisINR's
geometry scaled to ``--size``, ``--views`` views, Poisson noise at ``--photons`` per ray, or the population's own
acquisition with ``--pretrain-views`` / ``--pretrain-photons``; no images are used;
projected from the slices' native 512 x 512 grid with four rays per detector cell, or with ``--object-grid same``
from the reconstruction grid itself, the inverse crime of the numbers before 2026-12-03),
then reconstructs unseen slices: A0001 slices not pre-trained on (in domain) and A0002 slices (another scanner
and kernel: out of domain). Every method runs with its library defaults for a CT scan and reference-free choices
(the hold-out stopping rule; TV at its default relative weight, lam_rel 0.01). For DisINR and NGP it also
records the convergence curve: PSNR after ``--curve`` adaptation steps of a run without stopping (DisINR paper
Fig. 2B).

    python benchmarks/disinr_ct.py --n-pretrain 16 --pretrain-steps 2000      # ~40 min on 1 core before stop 45
    # (since stop 45 NGP and DisINR model these 128^2 slices on the 2x finer grid on the CPU too: 3x per fit)
    python benchmarks/disinr_ct.py --model disinr_ct.safetensors --set prior.tv=0   # an adaptation ablation
    # a population acquired at a routine dose (360 views, 1e6 photons/ray), tested at 60 noisy views:
    python benchmarks/disinr_ct.py --n-pretrain 62 --pretrain-steps 1000 --pretrain-views 360 --pretrain-photons 1e6

Prints one JSON line per result and a JSON summary (PSNR / SSIM, seconds, steps, margins over NGP and TV).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from inrecon.data import shared
from inrecon.experiments.drivers.populations import ct_scans
from inrecon.metrics import evaluate
from inrecon.recon.api import pretrain, run_method
from inrecon.report.core import collect_environment
from inrecon.runtime import resolve_device

A0001_SLICES = 64


def parse_sets(items) -> dict:
    """``key=json`` pairs (a bare string when the value is not JSON)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def pretrain_indices(n: int, held_out: list[int]) -> list[int]:
    """``n`` A0001 slices spread over the volume, none of the held-out ones."""
    pool = [i for i in range(A0001_SLICES) if i not in held_out]
    return [pool[k] for k in np.linspace(0, len(pool) - 1, n).round().astype(int)]


def slices(subject: str, indices: list[int], args) -> np.ndarray:
    """lungdx slices on the object grid of ``--object-grid``."""
    return shared.lungdx_slices(
        subject, indices=indices, size=shared.LUNGDX_NATIVE if args.object_grid == "native" else args.size
    )


def simulate(images, args, seed0: int) -> list:
    return ct_scans(images, args.views, args.photons, seed0, size=args.size)


def score(scan, image) -> dict:
    m = evaluate(image.detach().cpu(), scan.target.cpu())
    return {"psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 3)}


def curve(scan, method: str, steps: list[int], over: dict, model) -> dict:
    """PSNR after each of ``steps`` steps of one run without the stopping rule."""
    every = int(np.gcd.reduce(steps))
    res = run_method(
        method,
        scan,
        {**over, "stop.rule": "none", "optim.steps": max(steps), "monitor.eval_every": every},
        show_progress=False,
        model=model,
    )
    hist = res.info["history"]
    at = dict(zip(hist["eval_step"], hist["psnr"], strict=True))
    at[max(steps)] = score(scan, res.image)["psnr"]
    return {str(s): round(at[s], 2) for s in steps if s in at}


def population_acquisition(args) -> argparse.Namespace:
    """``args`` with the pre-training population's views and photons: the test scans' own unless
    ``--pretrain-views`` / ``--pretrain-photons`` say otherwise (0 photons: noise-free)."""
    pre = argparse.Namespace(**vars(args))
    if args.pretrain_views is not None:
        pre.views = args.pretrain_views
    if args.pretrain_photons is not None:
        pre.photons = args.pretrain_photons
    return pre


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--views", type=int, default=60)
    ap.add_argument("--photons", type=float, default=1e5, help="per ray; 0: noise-free")
    ap.add_argument(
        "--object-grid",
        choices=("native", "same"),
        default="native",
        help="project the native 512^2 slices (default) or the reconstruction grid (the inverse crime)",
    )
    ap.add_argument("--n-pretrain", type=int, default=16)
    ap.add_argument("--pretrain-steps", type=int, default=2000)
    ap.add_argument("--pretrain-set", action="append", default=[], help="pre-training config key=value")
    ap.add_argument(
        "--pretrain-views",
        type=int,
        help="views of the pre-training population's scans (default --views: acquired as the test scans)",
    )
    ap.add_argument(
        "--pretrain-photons",
        type=float,
        help="photons per ray of the pre-training population's scans; 0: noise-free (default --photons)",
    )
    ap.add_argument("--model", help="reuse this pre-trained model (else pre-train and write --output)")
    ap.add_argument("--output", default="disinr_ct.safetensors")
    ap.add_argument("--in-domain", type=int, nargs="*", default=[30, 45], help="held-out A0001 slices")
    ap.add_argument("--out-domain", type=int, nargs="*", default=[15], help="A0002 slices")
    ap.add_argument("--methods", nargs="*", default=["fbp", "tv", "ngp", "disinr"])
    ap.add_argument("--set", action="append", default=[], help="DisINR adaptation key=value")
    ap.add_argument("--ngp-set", action="append", default=[], help="NGP config key=value")
    ap.add_argument("--curve", default="25,50,100,200", help="adaptation steps of the convergence curve; ''")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto: where the scans and networks live")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    adapt_over = parse_sets(args.set)
    ngp_over = parse_sets(args.ngp_set)
    out = {
        "data": f"lungdx, {args.size}^2, {args.views} fan views, photons {args.photons or 'none'}, "
        f"projected from the {args.object_grid} grid",
        "threads": args.threads,
        "machine": collect_environment(device=str(dev)),
        "adaptation_overrides": adapt_over,
        "ngp_overrides": ngp_over,
    }
    model = args.model
    if model is None and "disinr" in args.methods:
        idx = pretrain_indices(args.n_pretrain, args.in_domain)
        pre = population_acquisition(args)
        scans = [s.to(dev) for s in simulate(slices("A0001", idx, pre), pre, seed0=1000)]
        over = {"optim.steps": args.pretrain_steps, **parse_sets(args.pretrain_set)}
        t0 = time.perf_counter()
        model = pretrain("disinr", scans, args.output, over, names=[f"A0001[{i}]" for i in idx])
        out["pretrain"] = {
            "slices": idx,
            "views": pre.views,
            "photons": pre.photons or None,
            "overrides": over,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps({"pretrain": out["pretrain"]}), flush=True)
    cases = [("A0001", i, "in domain") for i in args.in_domain] + [
        ("A0002", i, "out of domain") for i in args.out_domain
    ]
    steps = [int(s) for s in args.curve.split(",") if s]
    rows = []
    for subject, i, domain in cases:
        scan = simulate(slices(subject, [i], args), args, seed0=i)[0].to(dev)
        for method in args.methods:
            over = {"disinr": adapt_over, "ngp": ngp_over}.get(method, {})
            t0 = time.perf_counter()
            res = run_method(
                method, scan, over, show_progress=False, model=model if method == "disinr" else None
            )
            row = {"case": f"{subject}[{i}]", "domain": domain, "method": method, **score(scan, res.image)}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            if "chosen_steps" in res.info:
                row["steps"] = res.info["chosen_steps"]
            # freeze=auto: the way the held-out loss chose, and every way's loss
            row.update({k: res.info[k] for k in ("candidate", "candidate_scores") if k in res.info})
            if steps and method in ("ngp", "disinr"):
                row["curve"] = curve(scan, method, steps, over, model if method == "disinr" else None)
            rows.append(row)
            print(json.dumps(row), flush=True)
    by = {(r["case"], r["method"]): r["psnr"] for r in rows}
    out["rows"] = rows
    if "disinr" in args.methods:
        out["disinr_minus"] = {
            ref: {c: round(by[(c, "disinr")] - by[(c, ref)], 2) for c, m in by if m == "disinr"}
            for ref in ("ngp", "tv")
            if ref in args.methods
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
