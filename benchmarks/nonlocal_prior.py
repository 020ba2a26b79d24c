"""A non-local prior against TV on the quality suite's cases: the ``pnp`` methods (MRI and CT), and the denoiser.

Stop 53 measured the hand-made priors beyond TV at their best on the real 8-coil brain (second-order TGV: +0.14 dB
over TV with every weight chosen in hindsight) and stop 54 a small learned denoiser (level with TV). ``pnp`` is a
prior of another kind, non-local self-similarity: plug-and-play half-quadratic splitting with block-matching
collaborative filtering (:mod:`inrecon.physics.denoisers`, BM3D's two stages written here), started from TV's image;
its noise level and TV's weight chosen by the hold-out rule, and TV's image kept where no noise level predicts the
held-out samples better (``docs/methods.md`` 6.2). On a CT case the method is ``pnp-ct`` (ADMM on TV-CT's
counts-weighted data term and finer grid, started from TV-CT's image, ``docs/methods.md`` 6.3) beside TV-CT.

For every case named: TV and ``pnp`` as the quality suite runs them (``inrecon.experiments.drivers.quality``'s
classical references), scored as the suite scores them. One JSON line per case: both PSNR / SSIM, what each chose,
whether the denoiser was used, the seconds. ``--check`` first denoises the library's 128 x 128 brain phantom with
white Gaussian noise (and with the BM3D authors' ``bm3d`` package beside it where that is installed: its licence
allows non-commercial use only, so the library does not use it).

    python benchmarks/nonlocal_prior.py --check --cases brain8ch dipy-cart-af6
    python benchmarks/nonlocal_prior.py --cases A0001-60-noisy scope-90 A0002-60-noisy
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from inrecon.experiments.bench import load_experiment
from inrecon.experiments.drivers.quality import CLASSICAL, build_case, case_modality
from inrecon.metrics import evaluate
from inrecon.physics.denoisers import block_matching_denoise
from inrecon.recon.api import run_method


def check(sigma: float) -> dict:
    """The denoiser on the brain phantom (128 x 128, scaled to [0, 1]) with white Gaussian noise of ``sigma``."""
    from inrecon.data.phantoms import brain_phantom

    img = torch.from_numpy(np.abs(brain_phantom((128, 128))).astype(np.float32))
    img = img / img.max()
    noisy = img + sigma * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))

    def psnr(a):
        return round(float(10 * torch.log10(1.0 / ((a - img) ** 2).mean())), 2)

    t = time.perf_counter()
    row = {"check": "brain phantom 128x128", "sigma": sigma, "noisy": psnr(noisy)}
    row["ours"] = psnr(block_matching_denoise(noisy, sigma))
    row["ours_seconds"] = round(time.perf_counter() - t, 2)
    try:
        import bm3d
    except ImportError:
        row["bm3d"] = "not installed"
    else:
        row["bm3d"] = psnr(torch.from_numpy(bm3d.bm3d(noisy.numpy(), sigma)).float())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [c.name for c in load_experiment("quality").config.cases]
    mri = [c.name for c in load_experiment("quality").config.cases if case_modality(c) == "mri"]
    ap.add_argument(
        "--cases", nargs="*", default=mri, choices=names, help="quality-suite cases [the MRI ones]"
    )
    ap.add_argument("--check", action="store_true", help="first denoise a phantom at sigma 0.1 and 0.05")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        for sigma in (0.1, 0.05):
            print(json.dumps(check(sigma)), flush=True)
    cases = {c.name: c for c in load_experiment("quality").config.cases}
    for name in args.cases:
        modality = case_modality(cases[name])
        runs = {r.method: r for r in CLASSICAL[modality]}
        scan = build_case(cases[name])
        roi = None if scan.roi is None else scan.roi.cpu()
        row: dict = {"case": name, "threads": args.threads}
        for method in ("tv", "pnp"):
            t = time.perf_counter()
            res = run_method(method, scan, runs[method].overrides, show_progress=False)
            m = evaluate(res.image.detach().cpu(), scan.target.cpu(), roi=roi, scale=modality == "mri")
            row[method] = {
                "psnr": round(m["psnr"], 3),
                "ssim": round(m["ssim"], 4),
                "lam": res.info.get("lam_rel", res.info.get("lam")),  # TV-CT: its relative weight
            }
            row[method]["seconds"] = round(time.perf_counter() - t, 1)
            if method == "pnp":
                row[method].update(start_tv=res.info["start_tv"], denoiser_used=res.info["denoiser_used"])
        row["pnp - tv"] = round(row["pnp"]["psnr"] - row["tv"]["psnr"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
