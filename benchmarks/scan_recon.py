"""Wall time and PSNR of a 2000-step scan-specific INR (NGP) reconstruction of a 16-coil 256 x 256 Cartesian scan.

The scan: the real T1 slice (``images/dipy_t1_coronal_slice.npy``; a brain phantom when the data is absent),
16 simulated coils, 1D Cartesian AF 4 with 24 ACS lines, SNR 30 dB. The reconstruction runs a fixed number of
steps (no stopping rule: this measures the speed of the training loop) of the library's own engine
(:func:`inrecon.engine.trainer.train` on the NGP model and the scan's measurement model, as ``inrecon recon
--method ngp --set stop=none`` runs it) with the default network, and reports total wall time, time per step
(after the first 20 steps), and the final PSNR. The Bilevel paper
reports under 6 s for this on an A40 GPU; our target is under 2 s on an H100 at the same quality.

    python benchmarks/scan_recon.py [--steps 2000] [--device cuda] [--set mlp_layers=2 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time

import torch

from inrecon.config import build_config, config_to_dict
from inrecon.data import shared
from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.engine.fit import FitTask
from inrecon.engine.trainer import Callback, train
from inrecon.metrics import evaluate
from inrecon.physics.measurement import measure
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.inr.ngp import NGPConfig, field_model
from inrecon.runtime import resolve_device


class _Clock(Callback):
    """Wall time at the start and after the 20th step (synchronised on a GPU)."""

    def __init__(self, sync):
        self.sync, self.t0, self.t_warm = sync, 0.0, None

    def on_start(self, run):
        self.sync()
        self.t0 = time.perf_counter()

    def on_step_end(self, run, step, out):
        if step == 19:
            self.sync()
            self.t_warm = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the decoder (GPU)")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="print the 15 costliest kernels of the run (torch.profiler) to stderr",
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ngp config overrides")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    img = shared.dipy_t1() if shared.available(shared.DIPY_T1) else brain_phantom((256, 256), seed=0)
    scan = simulate_mri(img, n_coils=16, mask=cartesian_1d((256, 256), 4, acs=24), snr_db=30, seed=0).to(dev)
    over = {**dict(s.split("=", 1) for s in args.set), "steps": args.steps, "compile": args.compile}
    cfg = build_config(NGPConfig, {**over, "seed": 0})
    meas = measure(scan, cfg.data)
    model = field_model(meas, cfg)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    clock = _Clock(sync)
    acts = [torch.profiler.ProfilerActivity.CPU]
    acts += [torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else []
    with torch.profiler.profile(activities=acts) if args.profile else contextlib.nullcontext() as prof:
        run = train(
            FitTask(model, meas, cfg.loss),
            cfg.optim,
            [clock],
            sync_every=cfg.monitor.sync_every,
            cuda_graph=cfg.monitor.cuda_graph,
        )
        sync()
    if args.profile:
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=15), file=sys.stderr)
    t1 = time.perf_counter()
    rec = meas.finalize(model.image())
    m = evaluate(rec.cpu(), scan.target.cpu(), roi=scan.roi.cpu(), scale=True)
    print(
        json.dumps(
            {
                "benchmark": "scan_recon_ngp",
                "scan": "dipy T1 slice" if shared.available(shared.DIPY_T1) else "brain phantom",
                "protocol": "16 coils, 256x256, 1D Cartesian AF 4 + 24 ACS, SNR 30 dB, seed 0",
                "steps": args.steps,
                "config": config_to_dict(cfg),
                "total_seconds": t1 - clock.t0,
                "seconds_per_step": (t1 - clock.t_warm) / max(1, args.steps - 20),
                "psnr": m["psnr"],
                "ssim": m["ssim"],
                "device": str(dev),
                "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
                "cpu": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "compile": args.compile,
                "cuda_graph": run.graphed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
