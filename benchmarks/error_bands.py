"""Where a reconstruction's error lives: by spatial frequency, at acquired and missing k-space, on the edges.

For one case of the quality suite (``src/inrecon/configs/bench/quality.json``) every method named runs as the suite
runs it (classical weights by hold-out, INR methods with their defaults; ``--set`` overrides the INR methods; no
method that needs a pre-trained model), is
scored as the suite scores it, and its error image ``e = x - ref`` (MRI: the least-squares scaled magnitude in the
scan's ROI; CT: the whole image) is taken apart:

- ``bands``: the share of ``sum |FFT(e)|^2`` in rings of radial frequency, in fractions of the grid's Nyquist
  frequency (``0.5`` cycles per pixel along each axis; the corners reach ``sqrt(2)``);
- ``edges``: the share of ``sum e^2`` on the ``--edge-share`` of ROI pixels with the largest reference gradient;
- MRI on a Cartesian grid, ``acquired_vs_missing``: in each ring, the mean error power per k-space location at the
  locations the mask acquired and at those it did not. A prior can only act on the second; where the two are
  alike, the error at the acquired locations is not noise that the data and the reference share (a
  data-consistency step would remove that) but detail both halves of k-space lack;
- ``reference_bands``: the reference's own power per location in each ring (how much there is to get right).

The correlation of every pair of methods' error images closes the output. One JSON line per method (with what its
hold-out chose), then the pairs. 1 thread by default, as the suite's numbers are.

    python benchmarks/error_bands.py --case brain8ch --methods tv ngp
    python benchmarks/error_bands.py --case A0001-60-noisy --methods tv ngp --quick
"""

from __future__ import annotations

import argparse
import itertools
import json
import math

import numpy as np
import torch

from inrecon.cli.common import parse_sets
from inrecon.experiments.bench import load_experiment
from inrecon.experiments.drivers.quality import CLASSICAL, build_case
from inrecon.experiments.runner import MethodRun, run_comparison

BANDS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0, math.sqrt(2) + 1e-9)
"""Ring edges in fractions of the Nyquist frequency."""
CHOICES = ("lam", "lam_rel", "iters_chosen", "prior_tv", "prior_phase", "chosen_steps")
"""What the hold-out chose for a method, printed with its line."""


def radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    """``|f| / f_Nyquist`` of every location of a centred 2D k-space grid (Nyquist: 0.5 cycles per pixel)."""
    fy = (np.arange(shape[0]) - shape[0] // 2) / shape[0]
    fx = (np.arange(shape[1]) - shape[1] // 2) / shape[1]
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5


def power(image: np.ndarray) -> np.ndarray:
    """``|FFT(image)|^2``, centred, orthonormal (its sum is ``sum image^2``)."""
    return np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho"))) ** 2


def edge_mask(ref: np.ndarray, roi: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of ROI pixels with the largest reference gradient magnitude (fewer where fewer have any)."""
    gy, gx = np.gradient(ref)
    g = np.hypot(gy, gx)
    cut = np.quantile(g[roi], 1.0 - share)
    return roi & (g >= cut) & (g > 0)


def _sig(v: float) -> float:
    return float(f"{v:.3g}")


def decompose(
    err: np.ndarray, ref: np.ndarray, roi: np.ndarray, mask: np.ndarray | None, share: float
) -> dict:
    """The error's shares by ring and on the edges (module docstring)."""
    p, r = power(err), radial_frequency(err.shape)
    total = float(p.sum()) or 1.0
    rp = power(ref * roi)
    out: dict = {"bands": {}, "reference_bands": {}}
    for lo, hi in itertools.pairwise(BANDS):
        ring = (r >= lo) & (r < hi)
        if not ring.any():
            continue
        key = f"{lo:.2f}-{min(hi, math.sqrt(2)):.2f}"
        out["bands"][key] = round(float(p[ring].sum()) / total, 4)
        out["reference_bands"][key] = _sig(float(rp[ring].mean()))
        if mask is not None:
            acq, miss = ring & mask, ring & ~mask
            out.setdefault("acquired_vs_missing", {})[key] = [
                _sig(float(p[acq].mean())) if acq.any() else None,
                _sig(float(p[miss].mean())) if miss.any() else None,
            ]
    if mask is not None:
        out["error_at_acquired"] = round(float(p[mask].sum()) / total, 4)
        out["acquired_share"] = round(float(mask.mean()), 4)
    sq = err**2
    out["edges"] = round(float(sq[edge_mask(ref, roi, share)].sum()) / (float(sq.sum()) or 1.0), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cases = {c.name: c for c in load_experiment("quality").config.cases}
    ap.add_argument("--case", required=True, choices=sorted(cases))
    ap.add_argument("--methods", nargs="+", default=["tv", "ngp"])
    ap.add_argument(
        "--quick", action="store_true", help="INR methods at the quick suite's budget (600 steps)"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="INR method override")
    ap.add_argument("--edge-share", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scan = build_case(cases[args.case])
    classical = {r.method: r for r in CLASSICAL[scan.modality]}
    inr = {**({"steps": 600, "patience": 100} if args.quick else {}), **parse_sets(args.set)}
    runs = [classical.get(m) or MethodRun(m.upper(), m, dict(inr)) for m in args.methods]
    comp = run_comparison([(args.case, scan)], runs, show_progress=False, log=None)
    ref = comp.references[args.case].astype(np.float64)
    roi = comp.rois[args.case]
    roi = np.ones(ref.shape, bool) if roi is None else roi.astype(bool)
    mask = None
    if scan.modality == "mri" and scan.is_cartesian and scan.mask.ndim == 2:
        mask = scan.mask.cpu().numpy().astype(bool)
    errors = {}
    for res in comp.results:
        err = (res.image.astype(np.float64) - ref) * roi
        errors[res.label] = err
        line = {"case": args.case, "method": res.label, "psnr": round(res.metrics["psnr"], 3)}
        line.update({k: res.info[k] for k in CHOICES if res.info.get(k) is not None})
        print(json.dumps({**line, **decompose(err, ref, roi, mask, args.edge_share)}), flush=True)
    labels = list(errors)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            c = float(np.corrcoef(errors[a][roi], errors[b][roi])[0, 1])
            print(
                json.dumps({"case": args.case, "pair": [a, b], "error_correlation": round(c, 3)}), flush=True
            )


if __name__ == "__main__":
    main()
