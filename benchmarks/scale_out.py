"""Speed-up of ``inrecon recon`` over many scans with ``--jobs N`` against one at a time. Prints JSON.

Data: ``--scans`` simulated MRI scans (brain phantom of seed i at ``--size`` x ``--size``, 8 coils, 1D Cartesian
AF 4 with 16 ACS lines, 30 dB SNR), written to a temporary folder. Each is reconstructed by the scan-specific
INR (``ngp``, ``--steps`` steps, no hold-out stopping, seed 0) with the command line itself, as a user runs it:
``inrecon recon --method ngp DIR/*.h5 -o OUT --jobs J`` in a fresh process, for J = 1 (in-process, all cores'
torch threads, the default; and again with one thread, ``OMP_NUM_THREADS=1``, which separates the gain of
processes from the cost of threads contending for busy cores) and J = ``--jobs`` (J spawned workers, cores // J
threads each). The times are whole-command wall times (interpreter start, imports and worker start-up
included); the images of the default serial and the parallel run are compared (same seeds: the same images up
to floating-point reduction order). The machine's 1-minute load average at the start is reported: on shared
cores the serial run's threads wait for each other, which the one-thread run shows.

    python benchmarks/scale_out.py --scans 8 --size 64 --steps 300 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inrecon.data.io.hdf5 import write_scan
from inrecon.data.io.images import read_image
from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.parallel import available_cores
from inrecon.physics.simulate.mri import simulate_mri


def make_scans(folder: Path, n: int, size: int) -> list[Path]:
    paths = []
    for i in range(n):
        img = brain_phantom((size, size), seed=i)
        mask = cartesian_1d(img.shape, 4, acs=16)
        path = folder / f"scan{i:02d}.h5"
        write_scan(path, simulate_mri(img, n_coils=8, mask=mask, snr_db=30, seed=i))
        paths.append(path)
    return paths


def run(paths: list[Path], out: Path, jobs: int, steps: int, threads: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "inrecon.cli", "recon", "--method", "ngp", *map(str, paths), "-o", str(out)]
    cmd += ["--jobs", str(jobs), "-q", "--set", f"steps={steps}", "--set", "stop=none"]
    t0 = time.perf_counter()
    env = {**os.environ, "INRECON_PROGRESS": "0"}
    if threads is not None:  # torch's default thread count follows OMP_NUM_THREADS
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"inrecon failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout)
    fits = [r["summary"]["seconds"] for r in res["results"]]
    psnr = [r["summary"]["metrics"]["psnr"] for r in res["results"]]
    return {
        "jobs": jobs,
        "threads_per_process": threads
        or (available_cores() // jobs if jobs > 1 else torch.get_num_threads()),
        "backend": res["backend"],
        "wall_seconds": round(seconds, 2),
        "fit_seconds_each": [round(s, 2) for s in fits],
        "psnr_mean": round(float(np.mean(psnr)), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scans", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="inrecon-scale-out-") as tmp:
        tmp = Path(tmp)
        (tmp / "scans").mkdir()
        paths = make_scans(tmp / "scans", args.scans, args.size)
        load = os.getloadavg()[0]
        one = run(paths, tmp / "one", 1, args.steps)
        one_thread = run(paths, tmp / "one_thread", 1, args.steps, threads=1)
        many = run(paths, tmp / "many", args.jobs, args.steps)
        diff = max(
            float(
                np.max(
                    np.abs(
                        np.asarray(read_image(tmp / "one" / p.name))
                        - np.asarray(read_image(tmp / "many" / p.name))
                    )
                )
            )
            for p in paths
        )
    print(
        json.dumps(
            {
                "benchmark": "recon_scale_out",
                "data": {
                    "scans": args.scans,
                    "size": [args.size, args.size],
                    "phantom": "brain_phantom(seed=i)",
                    "coils": 8,
                    "sampling": "cartesian_1d AF 4, 16 ACS lines",
                    "snr_db": 30,
                },
                "method": {"name": "ngp", "steps": args.steps, "stop": "none", "seed": 0},
                "hardware": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": available_cores(),
                    "torch": torch.__version__,
                    "device": "cpu",
                    "load_average_1min_at_start": round(load, 2),
                },
                "serial": one,
                "serial_one_thread": one_thread,
                "parallel": many,
                "speedup": round(one["wall_seconds"] / many["wall_seconds"], 2),
                "speedup_vs_serial_one_thread": round(one_thread["wall_seconds"] / many["wall_seconds"], 2),
                "max_abs_image_difference": diff,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
