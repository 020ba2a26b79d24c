"""Forward + adjoint time of our operators, side by side with independent implementations, in one run.

- SENSE, 16 coils, 256 x 256, Cartesian mask: ours vs sigpy's ``mri.linop.Sense`` (numpy).
- NUFFT SENSE, radial 40 spokes x 512 readout, 16 coils, 256 x 256: ours vs torchkbnufft's defaults
  (``KbNufft``/``KbNufftAdjoint`` with table interpolation) vs sigpy's ``Sense`` with coordinates.
- CT fan beam, 256 x 256, 60 views x 500 detectors (DisINR geometry): ours vs ASTRA's CPU ``line_fanflat``.
- The TV prox of every PDHG iteration (projection of a gradient field onto the l2,1 ball), on the fields of
  the suite's TV solves (a 2 x 512 x 512 real CT field, 2 x 256 x 256 complex MRI, 3 x 64^3 real volume): ours
  (:func:`~inrecon.recon.classical.solvers.group_magnitude`) vs the same projection through
  ``torch.linalg.vector_norm``, which CPU torch reduces over a leading axis far more slowly.

Each pair is timed interleaved (ours, other, ours, ...) and reported as medians plus the ratio other/ours;
libraries that are not installed are reported as skipped. Prints JSON.

    python benchmarks/operators.py [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import numpy as np
import torch

from inrecon.data.sampling import cartesian_1d, radial_trajectory
from inrecon.data.shared import disinr_fan_geometry
from inrecon.physics.ct import CTProjector
from inrecon.physics.mri import SenseOp
from inrecon.physics.nufft import NufftSenseOp
from inrecon.physics.simulate.ct import full_scan_angles
from inrecon.physics.simulate.mri import coil_sensitivities
from inrecon.recon.classical.solvers import project_l21_ball


def interleaved(fns: dict, repeats: int) -> dict:
    for f in fns.values():
        f()
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}


def bench_sense(repeats: int) -> dict:
    shape, c = (256, 256), 16
    maps = coil_sensitivities(shape, c, seed=0)
    mask = cartesian_1d(shape, 4, acs=24)
    x = torch.randn(shape, dtype=torch.complex64)
    op = SenseOp(maps, mask)
    fns = {"ours": lambda: op.adjoint(op(x))}
    out = {"operator": "SENSE", "coils": c, "image": list(shape)}
    try:
        import sigpy.mri

        mps = maps.numpy()
        weights = np.broadcast_to(mask.numpy(), (c, *shape)).astype(np.float32)
        s = sigpy.mri.linop.Sense(mps, weights=weights)
        xn = x.numpy()
        fns["sigpy"] = lambda: s.H(s(xn))
    except ImportError:
        out["sigpy"] = "skipped (not installed)"
    out.update(interleaved(fns, repeats))
    if "sigpy_ms" in out:
        out["sigpy_over_ours"] = out["sigpy_ms"] / out["ours_ms"]
    return out


def bench_nufft(repeats: int) -> dict:
    shape, c, spokes, nread = (256, 256), 16, 40, 512
    maps = coil_sensitivities(shape, c, seed=0)
    traj = radial_trajectory(spokes, nread)
    x = torch.randn(shape, dtype=torch.complex64)
    op = NufftSenseOp(maps, traj, shape)
    fns = {"ours": lambda: op.adjoint(op(x))}
    out = {"operator": "NUFFT SENSE (radial)", "coils": c, "image": list(shape), "samples": spokes * nread}
    try:
        import torchkbnufft as tkbn

        nf = tkbn.KbNufft(im_size=shape)
        na = tkbn.KbNufftAdjoint(im_size=shape)
        omega = traj.T.contiguous()
        smaps = maps[None]
        xb = x[None, None]
        fns["torchkbnufft"] = lambda: na(nf(xb, omega, smaps=smaps), omega, smaps=smaps)
    except ImportError:
        out["torchkbnufft"] = "skipped (not installed)"
    try:
        import sigpy.mri

        coord = (traj.numpy() * (np.array(shape) / (2 * math.pi))).astype(np.float32)
        s = sigpy.mri.linop.Sense(maps.numpy(), coord=coord)
        xn = x.numpy()
        fns["sigpy"] = lambda: s.H(s(xn))
    except ImportError:
        out["sigpy"] = "skipped (not installed)"
    out.update(interleaved(fns, repeats))
    for k in ("torchkbnufft", "sigpy"):
        if f"{k}_ms" in out:
            out[f"{k}_over_ours"] = out[f"{k}_ms"] / out["ours_ms"]
    return out


def bench_ct(repeats: int) -> dict:
    geom = disinr_fan_geometry((256, 256))
    angles = full_scan_angles(60)
    op = CTProjector(geom, angles)
    x = torch.rand(256, 256)
    fns = {"ours": lambda: op.adjoint(op(x))}
    out = {"operator": "CT fan beam", "image": [256, 256], "views": 60, "detectors": 500, "nnz": op.nnz}
    try:
        import astra

        vg = astra.create_vol_geom(256, 256, -128, 128, -128, 128)
        pg = astra.create_proj_geom("fanflat", 2.0, 500, angles.double().numpy(), 300.0, 300.0)
        pid = astra.create_projector("line_fanflat", pg, vg)
        xn = x.numpy()

        def astra_fa():
            sid, sino = astra.create_sino(xn, pid)
            bid, _bp = astra.create_backprojection(sino, pid)
            astra.data2d.delete([sid, bid])

        fns["astra"] = astra_fa
    except ImportError:
        out["astra"] = "skipped (not installed)"
    out.update(interleaved(fns, repeats))
    if "astra_ms" in out:
        out["astra_over_ours"] = out["astra_ms"] / out["ours_ms"]
    return out


def bench_tv_prox(shape: tuple[int, ...], dtype: torch.dtype, repeats: int) -> dict:
    p = 3 * torch.randn(shape, dtype=dtype)
    ours = project_l21_ball(1.0, axis=0)

    def reference():
        return p / torch.linalg.vector_norm(p, dim=0, keepdim=True).clamp_min(1.0)

    out = {
        "operator": "TV prox (l2,1 ball)",
        "field": list(shape),
        "dtype": str(dtype),
        "max_abs_difference": float((ours(p, 1.0) - reference()).abs().max()),
    }
    out.update(interleaved({"ours": lambda: ours(p, 1.0), "vector_norm": reference}, repeats))
    out["vector_norm_over_ours"] = out["vector_norm_ms"] / out["ours_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = {
        "benchmark": "operators_forward_plus_adjoint",
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": "cpu",
        },
        "runs": [
            bench_sense(args.repeats),
            bench_nufft(max(3, args.repeats // 3)),
            bench_ct(args.repeats),
            bench_tv_prox((2, 512, 512), torch.float32, args.repeats),
            bench_tv_prox((2, 256, 256), torch.complex64, args.repeats),
            bench_tv_prox((3, 64, 64, 64), torch.float32, args.repeats),
        ],
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
