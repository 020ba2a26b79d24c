"""Evidence for the scan-specific INR's defaults: PSNR-vs-step curves and the hold-out rule's choice.

For each scan and each candidate config it runs (1) a "hindsight" fit on all samples with the reference
evaluated every ``--eval-every`` steps (peak PSNR and the step of the peak: what a reference would pick), and
optionally (2) the hold-out rule without the reference (``--rule``), and reports both. Prints JSON.

Scans: ``brain`` (real 8-coil brain, Poisson 12.7 %, ROI = coil-map support), ``dipy6`` (real T1 slice,
simulated 12 coils, 1D Cartesian AF 6 with 24 ACS lines, 30 dB SNR), ``phantom6`` (brain phantom, same
protocol), ``ct90`` (lungdx A0001 slice 32, DisINR fan geometry, 90 views).

    python benchmarks/ngp_defaults.py --scans brain --configs "mlp_layers=8,lr=1e-3" "mlp_layers=2,lr=1e-2"
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from inrecon.config import build_config
from inrecon.data import shared
from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.metrics import evaluate
from inrecon.physics.coils import with_espirit_support
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.inr.ngp import NGPConfig, reconstruct_ngp
from inrecon.recon.registry import Context


def load_scan(name: str):
    if name == "brain":
        return with_espirit_support(shared.brain8ch())
    if name in ("dipy6", "dipy8", "phantom6"):
        af = 8 if name.endswith("8") else 6
        img = shared.dipy_t1() if name.startswith("dipy") else brain_phantom((256, 256), seed=11)
        mask = cartesian_1d(img.shape, af, acs=24)
        return simulate_mri(img, n_coils=12, mask=mask, snr_db=30, seed=0)
    if name == "ct90":
        img = shared.lungdx_slices("A0001", indices=[32])[0]
        geom = shared.disinr_fan_geometry(img.shape)
        return simulate_ct(img, geom, full_scan_angles(90))
    raise SystemExit(f"unknown scan {name}")


def parse_config(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        k, v = item.split("=")
        out[k.strip()] = v.strip()
    return out


def run(scan_name: str, scan, overrides: dict, steps: int, eval_every: int, rule: bool) -> dict:
    base = {"steps": steps, "eval_every": eval_every, **overrides}
    cfg = build_config(NGPConfig, {**base, "stop": "none"})
    t0 = time.perf_counter()
    res = reconstruct_ngp(scan, cfg, Context(show_progress=False))
    hist = res.info["history"]
    psnrs = hist.get("psnr", [])
    best = max(range(len(psnrs)), key=psnrs.__getitem__) if psnrs else None
    out = {
        "scan": scan_name,
        "config": overrides,
        "hindsight": {
            "best_psnr": psnrs[best] if psnrs else None,
            "best_step": hist["eval_step"][best] if psnrs else None,
            "final_psnr": psnrs[-1] if psnrs else None,
            "curve": [[s, round(p, 2)] for s, p in zip(hist["eval_step"], psnrs)],
            "seconds": time.perf_counter() - t0,
            "seconds_per_step": (time.perf_counter() - t0) / steps,
        },
    }
    if rule:
        cfg = build_config(NGPConfig, {**base})
        t0 = time.perf_counter()
        r = reconstruct_ngp(scan, cfg, Context(show_progress=False))
        m = evaluate(r.image, scan.target, roi=scan.roi, scale=scan.modality == "mri")
        out["rule"] = {
            "psnr": m["psnr"],
            "ssim": m["ssim"],
            "chosen_steps": r.info.get("chosen_steps"),
            "seconds": time.perf_counter() - t0,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", nargs="+", default=["brain"])
    ap.add_argument("--configs", nargs="+", default=["mlp_layers=8,lr=1e-3", "mlp_layers=2,lr=1e-2"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--rule", action="store_true", help="also run the hold-out stopping rule")
    args = ap.parse_args()
    results = []
    for name in args.scans:
        scan = load_scan(name)
        for text in args.configs:
            r = run(name, scan, parse_config(text), args.steps, args.eval_every, args.rule)
            h = r["hindsight"]
            line = (
                f"{name} {text}: peak {h['best_psnr']:.2f} dB @ {h['best_step']}, final {h['final_psnr']:.2f}"
            )
            if "rule" in r:
                line += f" | rule {r['rule']['psnr']:.2f} dB ({r['rule']['chosen_steps']} steps)"
            print(line + f" | {h['seconds_per_step'] * 1e3:.0f} ms/step", flush=True)
            results.append(r)
    print(
        json.dumps(
            {
                "benchmark": "ngp_defaults",
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
