"""The block-matching denoiser: the library's against a straightforward reference, side by side in one run.

"reference" filters each stack as the algorithm reads (:mod:`inrecon.physics.denoisers`' docstring): gather the
``group`` patches of every reference patch, a separable 3D DCT of the stack (two patch axes and the stack axis),
hard thresholding or Wiener shrinkage, the inverse 3D DCT, each filtered patch times its stack's weight and the
Kaiser window put back with ``fold``. "ours" is :func:`~inrecon.physics.denoisers.block_matching_denoise` (the 2D
DCT per patch corner before gathering and after summing back, one matrix product along the stack; stop 65).
Both use the library's block matching, so the two agree to rounding where they match the same patches; the
second stage matches on the first stage's estimate, so a rounding difference there can change a match of a few
patches: the JSON reports the largest difference (such a change, locally, up to ~1e-3) and the mean one (rounding,
~1e-7, where the two agree). Runs are interleaved (ours,
reference, ours, ...) on a random image of each size; the JSON reports the medians and the speed-up ratio.

    python benchmarks/denoiser_speed.py [--sizes 128 256 512] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from inrecon.physics.denoisers import block_matching_denoise, dct_matrix, match_patches


def reference_stage(noisy, guide, pilot, sigma, patch, radius, group, stride, threshold) -> torch.Tensor:
    """One stage, stack by stack in one batch: ``(R, group, patch, patch)`` through a separable 3D DCT."""
    h, w = noisy.shape
    idx = match_patches(guide, patch, radius, group, stride)  # (R, group)
    d, g = dct_matrix(patch), dct_matrix(group)

    def stacks(image):  # (R, group, patch, patch)
        return F.unfold(image[None, None], patch)[0].T[idx].reshape(*idx.shape, patch, patch)

    def forward(s):
        return torch.einsum("ab,rbij,ki,lj->rakl", g, s, d, d)

    spec = forward(stacks(noisy))
    if pilot is None:
        keep = spec.abs() > threshold * sigma
        spec = spec * keep
        weight = 1.0 / (sigma**2 * keep.flatten(1).sum(1).clamp_min(1))
    else:
        power = forward(stacks(pilot)) ** 2
        shrink = power / (power + sigma**2)
        spec = spec * shrink
        weight = 1.0 / (sigma**2 * (shrink**2).flatten(1).sum(1).clamp_min(1e-8))
    est = torch.einsum("ab,rakl,ki,lj->rbij", g, spec, d, d)  # the inverse (orthonormal: transposes)
    win = torch.kaiser_window(patch, periodic=False, beta=2.0)
    win = win[:, None] * win[None, :]
    wk = weight[:, None, None, None] * win
    corners = (h - patch + 1) * (w - patch + 1)
    num = torch.zeros(corners, patch * patch).index_add_(0, idx.reshape(-1), (est * wk).reshape(-1, patch**2))
    den = torch.zeros(corners, patch * patch).index_add_(
        0, idx.reshape(-1), wk.expand_as(est).reshape(-1, patch**2)
    )
    return F.fold(num.T[None], (h, w), patch)[0, 0] / F.fold(den.T[None], (h, w), patch)[0, 0]


def reference_denoise(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The reference's denoised image (the library's defaults throughout)."""
    patch = 8
    common = {"sigma": sigma, "patch": patch, "radius": 8, "stride": 3, "threshold": 2.7}
    x = F.pad(image[None, None], (patch,) * 4, mode="reflect")[0, 0]
    basic = reference_stage(x, x, None, group=16, **common)
    final = reference_stage(x, basic, basic, group=32, **common)
    return final[patch:-patch, patch:-patch]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="image sides [128 256 512]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for n in args.sizes:
        gen = torch.Generator().manual_seed(0)
        image = torch.rand(n, n, generator=gen) * 0.3 + torch.linspace(0, 1, n)[None]
        times: dict[str, list[float]] = {"ours": [], "reference": []}
        with torch.no_grad():
            for _ in range(args.repeats):
                t = time.perf_counter()
                ours = block_matching_denoise(image, args.sigma)
                times["ours"].append(time.perf_counter() - t)
                t = time.perf_counter()
                ref = reference_denoise(image, args.sigma)
                times["reference"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "size": n,
            "sigma": args.sigma,
            "threads": args.threads,
            "ours_s": round(med["ours"], 3),
            "reference_s": round(med["reference"], 3),
            "speedup": round(med["reference"] / med["ours"], 2),
            "max_abs_diff": float((ours - ref).abs().max()),
            "mean_abs_diff": float((ours - ref).abs().mean()),
            "repeats": args.repeats,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
