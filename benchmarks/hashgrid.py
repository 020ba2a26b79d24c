"""Hash-grid training step: ours vs a straightforward vectorised reference, side by side in one run.

A step is encoding + MLP forward, backward, and an Adam step. "ours" is :class:`HashGridEncoding` with its
precomputed sparse plan (2D, fixed pixel grid) or its fused generic path (3D, fresh random coordinates every
step, as in volume fitting) and fused Adam; "reference" is :class:`ReferenceHashGrid` (one level at a time, one
gather per corner) with the default Adam. Runs are interleaved (ours, reference, ours, ...) so machine noise
hits both alike; the JSON reports medians and the speed-up ratio.

    python benchmarks/hashgrid.py [--repeats 7] [--mlp-layers 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from inrecon.models.encodings import HashGridConfig, HashGridEncoding
from inrecon.models.fields import grid_coords
from inrecon.models.hashgrid_reference import ReferenceHashGrid
from inrecon.models.networks import MLP, MLPConfig
from inrecon.runtime import tune_allocator


def make(kind: str, dim: int, mlp_layers: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = HashGridConfig()
    enc = HashGridEncoding(dim, cfg) if kind == "ours" else ReferenceHashGrid(dim, cfg)
    mlp = MLP(enc.out_dim, 2, MLPConfig(width=64, n_hidden_layers=mlp_layers))
    params = list(enc.parameters()) + list(mlp.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-15, fused=kind == "ours" or None)
    return enc, mlp, opt


def step_fn(kind: str, dim: int, n: int, mlp_layers: int):
    enc, mlp, opt = make(kind, dim, mlp_layers)
    g = torch.Generator().manual_seed(1)
    target = torch.randn(n, 2, generator=g)
    if dim == 2:
        side = int(round(n**0.5))
        coords = grid_coords((side, side))
        inputs = enc.plan(coords) if kind == "ours" else coords

        def step():
            loss = (mlp(enc(inputs)) - target).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    else:

        def step():
            coords = torch.rand(n, dim, generator=g)
            loss = (mlp(enc(coords)) - target).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def bench(dim: int, n: int, repeats: int, mlp_layers: int) -> dict:
    steps = {k: step_fn(k, dim, n, mlp_layers) for k in ("ours", "reference")}
    for s in steps.values():  # warm-up (allocator, first-touch)
        s()
        s()
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(repeats):
        for k, s in steps.items():
            t0 = time.perf_counter()
            s()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "dim": dim,
        "coordinates": n,
        "ours_ms": 1e3 * med["ours"],
        "reference_ms": 1e3 * med["reference"],
        "speedup": med["reference"] / med["ours"],
        "ours_all_ms": [round(1e3 * t, 1) for t in times["ours"]],
        "reference_all_ms": [round(1e3 * t, 1) for t in times["reference"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--mlp-layers", type=int, default=8, help="hidden layers of 64 (docs/methods.md default 8)"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    tune_allocator()  # as the training engine does on its first run
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "benchmark": "hashgrid_train_step",
        "config": {
            "levels": 16,
            "features": 2,
            "log2_T": "18 (2D) / 19 (3D)",
            "N_min": 16,
            "b": 1.5,
            "mlp": f"{args.mlp_layers}x64 ReLU",
            "optimizer": "Adam (ours fused)",
        },
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": "cpu",
        },
        "runs": [
            bench(2, 256 * 256, args.repeats, args.mlp_layers),
            bench(3, 2**18, args.repeats, args.mlp_layers),
        ],
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
