"""Wall time and PSNR of a 2000-step scan-specific INR (NGP) reconstruction of a 16-coil 256 x 256 Cartesian scan.

The scan: the real T1 slice (``images/dipy_t1_coronal_slice.npy``; a brain phantom when the data is absent),
16 simulated coils, 1D Cartesian AF 4 with 24 ACS lines, SNR 30 dB. The reconstruction runs a fixed number of
steps (no stopping rule: this measures the speed of the training loop) with the library's default network,
and reports total wall time, time per step (after the first 20 steps), and the final PSNR. The Bilevel paper
reports under 6 s for this on an A40 GPU; our target is under 2 s on an H100 at the same quality.

    python benchmarks/scan_recon.py [--steps 2000] [--device cuda] [--set mlp_layers=2 ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from inrecon.data import shared
from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.engine.losses import data_loss
from inrecon.metrics import evaluate
from inrecon.models.fields import ImageINR
from inrecon.physics.measurement import make_problem
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.inr.ngp import ScanINRConfig, build_field, param_groups
from inrecon.recon.registry import config_from_dict
from inrecon.runtime import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the field (GPU)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ScanINRConfig overrides")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    img = shared.dipy_t1() if shared.available(shared.DIPY_T1) else brain_phantom((256, 256), seed=0)
    scan = simulate_mri(img, n_coils=16, mask=cartesian_1d((256, 256), 4, acs=24), snr_db=30, seed=0).to(dev)
    cfg = config_from_dict(ScanINRConfig, dict(s.split("=", 1) for s in args.set))
    problem = make_problem(scan)
    inr = ImageINR(build_field(problem, cfg, seed=0).to(dev), problem.image_shape, True)
    if args.compile:
        inr.field = torch.compile(inr.field)
    ocfg = cfg.optim_config(steps=args.steps)
    opt = torch.optim.Adam(
        param_groups(inr.field, cfg.wd_enc, cfg.wd_mlp),
        lr=ocfg.lr,
        betas=(ocfg.beta1, ocfg.beta2),
        eps=ocfg.eps,
        fused=True,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=ocfg.lr_decay_every, gamma=ocfg.lr_decay)

    def step():
        image = inr()
        loss = data_loss(problem.predict(image), problem.y, ocfg.loss, ocfg.delta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(min(20, args.steps)):
        step()
    sync()
    t_warm = time.perf_counter()
    for _ in range(args.steps - 20):
        step()
    sync()
    t1 = time.perf_counter()
    with torch.no_grad():
        rec = problem.finalize(inr())
    m = evaluate(rec.cpu(), scan.target.cpu(), roi=scan.roi.cpu(), scale=True)
    print(
        json.dumps(
            {
                "benchmark": "scan_recon_ngp",
                "scan": "dipy T1 slice" if shared.available(shared.DIPY_T1) else "brain phantom",
                "protocol": "16 coils, 256x256, 1D Cartesian AF 4 + 24 ACS, SNR 30 dB, seed 0",
                "steps": args.steps,
                "config": {k: v for k, v in vars(cfg).items()},
                "total_seconds": t1 - t0,
                "seconds_per_step": (t1 - t_warm) / max(1, args.steps - 20),
                "psnr": m["psnr"],
                "ssim": m["ssim"],
                "device": str(dev),
                "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
                "cpu": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "compile": args.compile,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
