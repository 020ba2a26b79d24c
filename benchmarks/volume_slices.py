"""Slices of a NIfTI volume as a stack of 2D magnitude images for DisINR's pre-training population.

The DisINR benchmarks pre-train on simulated acquisitions of images (``--pretrain-images``): by default brain
phantoms; this writes real anatomy instead, e.g. the ICBM 2009a T1 template that the ``nilearn`` wheel carries
(``pip download nilearn==0.14.1 --no-deps``; unzip
``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``). The volume is read with nibabel and
turned to RAS+; a slice is taken at ``--count`` evenly spaced indices of ``--range`` along ``--axis``, oriented
(coronal: superior up, left-right across; axial: left-right down, posterior-to-anterior across),
centre-padded or -cropped to ``--canvas`` voxels, block-averaged by ``--block`` and scaled to a maximum of 1.

    # the dipy T1 slice's grid (128 x 128, 2 mm on a 256 mm field of view)
    python benchmarks/volume_slices.py T1.nii.gz --axis coronal --range 50 180 --canvas 256 256 --block 2 \\
        --output mni_cor128.npy
    # the real 8-coil brain's grid (180 x 230, 1 mm)
    python benchmarks/volume_slices.py T1.nii.gz --axis axial --range 50 140 --canvas 180 230 --output mni_ax.npy

Prints one JSON line: the output's shape and the slice indices.
"""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume", help="a NIfTI volume (.nii or .nii.gz)")
    ap.add_argument("--axis", choices=("coronal", "axial", "sagittal"), required=True)
    ap.add_argument("--range", type=int, nargs=2, required=True, metavar=("FIRST", "LAST"))
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--canvas", type=int, nargs=2, required=True, metavar=("ROWS", "COLS"))
    ap.add_argument("--block", type=int, default=1, help="block-average by this factor after the canvas")
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
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
    out = []
    for i in idx:
        img = fit_canvas(oriented_slice(vol, args.axis, int(i)), (rows, cols))
        img = img.reshape(rows // b, b, cols // b, b).mean((1, 3))
        if img.max() <= 0:
            raise SystemExit(f"slice {i} along {args.axis} is empty: narrow --range")
        out.append(img / img.max())
    stack = np.stack(out).astype(np.float32)
    np.save(args.output, stack)
    print(json.dumps({"output": args.output, "shape": list(stack.shape), "slices": idx.tolist()}))


if __name__ == "__main__":
    main()
