"""Slices of a NIfTI volume as a stack of 2D magnitude images for DisINR's pre-training population.

The DisINR benchmarks pre-train on simulated acquisitions of images (``--pretrain-images``): by default brain
phantoms; this writes real anatomy instead, e.g. the ICBM 2009a T1 template that the ``nilearn`` wheel carries
(``pip download nilearn==0.14.1 --no-deps``; unzip
``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``). The volume is read with nibabel and
turned to RAS+; a slice is taken at ``--count`` evenly spaced indices of ``--range`` along ``--axis``, oriented
(coronal: superior up, left-right across; axial: left-right down, posterior-to-anterior across),
centre-padded or -cropped to ``--canvas`` voxels, block-averaged by ``--block`` and scaled to a maximum of 1.

``--variants K`` adds, after each slice, ``K`` randomised copies of it (a population of "subjects" drawn from
one volume, for a template that is a single average brain): a random rotation (up to ``--rotate`` degrees) and
isotropic scale (up to ``--scale``), a smooth random displacement field (``--deform`` canvas voxels at most,
correlation length ``--smooth`` voxels), a random gamma (intensity ``I ** g``, ``log g`` uniform within
``log --gamma``) and a smooth multiplicative bias field (``1 +- --bias``), all drawn from ``--seed``; the
copies are resampled with linear interpolation on the canvas, before the block average.

    # the dipy T1 slice's grid (128 x 128, 2 mm on a 256 mm field of view)
    python benchmarks/volume_slices.py T1.nii.gz --axis coronal --range 50 180 --canvas 256 256 --block 2 \\
        --output mni_cor128.npy
    # the real 8-coil brain's grid (180 x 230, 1 mm)
    python benchmarks/volume_slices.py T1.nii.gz --axis axial --range 50 140 --canvas 180 230 --output mni_ax.npy
    # 12 slices and 2 randomised copies of each: 36 images
    python benchmarks/volume_slices.py T1.nii.gz --axis coronal --range 50 180 --canvas 256 256 --block 2 \\
        --variants 2 --output mni_cor128_var.npy

Prints one JSON line: the output's shape, the slice indices and the number of copies per slice.
"""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
from scipy import ndimage


def oriented_slice(vol: np.ndarray, axis: str, index: int) -> np.ndarray:
    """One slice of a RAS+ volume ``(x, y, z)``, oriented as the module docstring says."""
    if axis == "coronal":
        return np.rot90(vol[:, index, :])
    if axis == "axial":
        return vol[:, :, index]
    return np.rot90(vol[index, :, :])  # sagittal: superior up, anterior-posterior across


def fit_canvas(img: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """``img`` centre-padded with zeros or centre-cropped to ``canvas``."""
    out = np.zeros(canvas, dtype=np.float64)
    src, dst = [], []
    for n, c in zip(img.shape, canvas, strict=True):
        if n >= c:
            src.append(slice((n - c) // 2, (n - c) // 2 + c))
            dst.append(slice(0, c))
        else:
            src.append(slice(0, n))
            dst.append(slice((c - n) // 2, (c - n) // 2 + n))
    out[tuple(dst)] = img[tuple(src)]
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], smooth: float) -> np.ndarray:
    """White noise low-passed by a Gaussian of ``smooth`` pixels, scaled to a maximum magnitude of 1."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), smooth, mode="reflect")
    return f / max(float(np.abs(f).max()), 1e-12)


def randomised_variant(
    img: np.ndarray,
    rng: np.random.Generator,
    *,
    rotate: float = 8.0,
    scale: float = 0.08,
    deform: float = 6.0,
    smooth: float = 24.0,
    gamma: float = 1.4,
    bias: float = 0.15,
) -> np.ndarray:
    """A randomly deformed and re-contrasted copy of a 2D magnitude image ``(rows, cols)`` with values >= 0.

    Geometry: rotation by ``U(-rotate, rotate)`` degrees and scaling by ``1 + U(-scale, scale)`` about the centre,
    plus a smooth displacement field of at most ``deform`` pixels (correlation length ``smooth`` pixels);
    intensity: ``(I / max I) ** g`` with ``log g ~ U(-log gamma, log gamma)``, times a smooth bias field within
    ``1 +- bias``. Linear interpolation, zero outside the image. All strengths 0 (gamma 1) return ``img / max``.
    """
    rows, cols = img.shape
    top = float(img.max())
    if top <= 0:
        raise ValueError("an empty image has nothing to vary")
    angle = np.deg2rad(rng.uniform(-rotate, rotate))
    zoom = 1.0 + rng.uniform(-scale, scale)
    r, c = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    cr, cc = (rows - 1) / 2.0, (cols - 1) / 2.0
    dr, dc = r - cr, c - cc
    # output pixel -> input position: the inverse of "rotate by angle, scale by zoom"
    src_r = (np.cos(angle) * dr - np.sin(angle) * dc) / zoom + cr
    src_c = (np.sin(angle) * dr + np.cos(angle) * dc) / zoom + cc
    if deform > 0:
        src_r = src_r + deform * _smooth_field(rng, (rows, cols), smooth)
        src_c = src_c + deform * _smooth_field(rng, (rows, cols), smooth)
    out = ndimage.map_coordinates(img / top, [src_r, src_c], order=1, mode="constant", cval=0.0)
    out = np.clip(out, 0.0, None)
    if gamma != 1.0:
        out = out ** float(np.exp(rng.uniform(-np.log(gamma), np.log(gamma))))
    if bias > 0:
        out = out * (1.0 + bias * _smooth_field(rng, (rows, cols), 2 * smooth))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume", help="a NIfTI volume (.nii or .nii.gz)")
    ap.add_argument("--axis", choices=("coronal", "axial", "sagittal"), required=True)
    ap.add_argument("--range", type=int, nargs=2, required=True, metavar=("FIRST", "LAST"))
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--canvas", type=int, nargs=2, required=True, metavar=("ROWS", "COLS"))
    ap.add_argument("--block", type=int, default=1, help="block-average by this factor after the canvas")
    ap.add_argument("--variants", type=int, default=0, help="randomised copies of each slice (0: none)")
    ap.add_argument("--rotate", type=float, default=8.0, help="largest rotation of a copy, degrees")
    ap.add_argument("--scale", type=float, default=0.08, help="largest relative change of a copy's size")
    ap.add_argument("--deform", type=float, default=6.0, help="largest smooth displacement, canvas voxels")
    ap.add_argument(
        "--smooth", type=float, default=24.0, help="the displacement's correlation length, voxels"
    )
    ap.add_argument(
        "--gamma", type=float, default=1.4, help="largest gamma factor of a copy's contrast (>= 1)"
    )
    ap.add_argument("--bias", type=float, default=0.15, help="largest relative bias-field amplitude")
    ap.add_argument("--seed", type=int, default=0, help="seed of the randomised copies")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    if args.variants < 0 or args.gamma < 1.0 or min(args.rotate, args.scale, args.deform, args.bias) < 0:
        raise SystemExit("--variants, --rotate, --scale, --deform and --bias must be >= 0 and --gamma >= 1")
    if args.scale >= 1.0 or args.bias >= 1.0 or args.smooth <= 0:
        raise SystemExit("--scale and --bias must be below 1 and --smooth above 0")
    rows, cols = args.canvas
    if rows % args.block or cols % args.block:
        raise SystemExit(f"--canvas {rows} {cols} is not a multiple of --block {args.block}")
    vol = np.asarray(nib.as_closest_canonical(nib.load(args.volume)).get_fdata(), dtype=np.float64)
    size = vol.shape[{"sagittal": 0, "coronal": 1, "axial": 2}[args.axis]]
    if not 0 <= args.range[0] <= args.range[1] < size:
        raise SystemExit(
            f"--range {args.range[0]} {args.range[1]} is outside 0..{size - 1} along {args.axis}"
        )
    idx = np.linspace(*args.range, args.count).round().astype(int)
    b = args.block
    rng = np.random.default_rng(args.seed)
    vary = dict(
        rotate=args.rotate,
        scale=args.scale,
        deform=args.deform,
        smooth=args.smooth,
        gamma=args.gamma,
        bias=args.bias,
    )
    out = []
    for i in idx:
        canvas = fit_canvas(oriented_slice(vol, args.axis, int(i)), (rows, cols))
        if canvas.max() <= 0:
            raise SystemExit(f"slice {i} along {args.axis} is empty: narrow --range")
        for img in [canvas] + [randomised_variant(canvas, rng, **vary) for _ in range(args.variants)]:
            img = img.reshape(rows // b, b, cols // b, b).mean((1, 3))
            out.append(img / img.max())
    stack = np.stack(out).astype(np.float32)
    np.save(args.output, stack)
    print(
        json.dumps(
            {
                "output": args.output,
                "shape": list(stack.shape),
                "slices": idx.tolist(),
                "variants": args.variants,
            }
        )
    )


if __name__ == "__main__":
    main()
