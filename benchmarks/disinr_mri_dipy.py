"""DisINR's MRI data scale and adaptation rate on the dipy T1 slice, with NGP, TV and L1-wavelet beside it.

The scan: the real T1 slice (``images/dipy_t1_coronal_slice.npy``, 256 x 256) block-averaged to 128 x 128
(``--size 256``: as stored), 12 simulated coils, 1D Cartesian AF 6 with 12 ACS lines (24 at 256), 30 dB (noise
seed 100; ``--af`` / ``--pattern`` change the test scan's sampling, not the pre-training's). DisINR is
pre-trained on 12 simulated T2-like brain phantoms (or the images of ``--pretrain-images``, e.g. slices of a T1
template written by ``volume_slices.py``) with the AF 6 Cartesian acquisition (1000 steps, seed 0) at the data
scale ``--scale``, then adapted at each learning rate of ``--lrs`` (the data scale follows the model file).
PSNR of the magnitude against the slice's magnitude (``inrecon.metrics.evaluate``, no rescaling); 1 thread.

    python benchmarks/disinr_mri_dipy.py --scale max      # also runs NGP, TV and L1-wavelet
    python benchmarks/disinr_mri_dipy.py --scale image --no-references
    python benchmarks/disinr_mri_dipy.py --model disinr_dipy.safetensors --lrs 1e-2 --set optim.wd_enc=3e-5
    python benchmarks/disinr_mri_dipy.py --size 256 --lrs 3e-3 --pretrain-set arch.encoder_width=64 \
        --pretrain-set arch.decoder_width=64
    python benchmarks/disinr_mri_dipy.py --lrs 1e-2 --pretrain-images mni_cor128.npy --af 8 --pattern poisson
    python benchmarks/disinr_mri_dipy.py --model disinr_dipy.safetensors --lrs 1e-2 --ngp-seeds 0 1 2 3

Prints one JSON line per result.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from inrecon.cli.common import parse_sets
from inrecon.errors import InreconError
from inrecon.experiments.drivers.populations import (
    dipy_test_scan,
    dipy_test_simulation,
    mri_pretrain_images,
    mri_scans,
)
from inrecon.metrics import evaluate
from inrecon.recon.api import pretrain, run_method

# what the adaptation's hold-out chose: the shared pair's freezing (freeze=auto) and the phase prior's weight
CHOSEN = ("candidate", "candidate_scores", "prior_phase", "prior_scores", "phase_roughness")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=("max", "image"), default="image", help="pre-training data.scale")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3], help="adaptation learning rates")
    ap.add_argument("--n-pretrain", type=int, default=12)
    ap.add_argument("--pretrain-steps", type=int, default=1000)
    ap.add_argument("--output", default="disinr_dipy.safetensors")
    ap.add_argument("--model", help="reuse this pre-trained model (else pre-train and write --output)")
    ap.add_argument("--set", action="append", default=[], help="DisINR adaptation config key=value")
    ap.add_argument("--no-references", action="store_true", help="skip NGP, TV and L1-wavelet")
    ap.add_argument(
        "--ngp-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="NGP's seeds (initialisation and hold-out split; one line each and their mean): on this slice NGP "
        "moves by 1.6 dB between seeds, so a comparison with DisINR needs several",
    )
    ap.add_argument(
        "--size", type=int, choices=(128, 256), default=128, help="image side (256: not averaged)"
    )
    ap.add_argument("--pretrain-set", action="append", default=[], help="pre-training config key=value")
    ap.add_argument(
        "--pretrain-images",
        help="pre-train on these images instead of the phantoms: a .npy stack (N, size, size), magnitudes",
    )
    ap.add_argument("--af", type=float, default=6.0, help="the test scan's acceleration (pre-training: AF 6)")
    ap.add_argument(
        "--pattern",
        choices=("cartesian", "poisson", "radial"),
        default="cartesian",
        help="the test scan's sampling",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.size
    try:
        scan = dipy_test_scan(n, args.af, args.pattern)
    except InreconError as e:
        raise SystemExit(str(e)) from None
    sim = dipy_test_simulation(n)  # the pre-training's acquisition: the test scan's
    phantoms = mri_pretrain_images((n, n), args.n_pretrain, args.pretrain_images)
    if args.model:
        model = args.model
    else:
        t0 = time.perf_counter()
        over = {
            "steps": args.pretrain_steps,
            "seed": 0,
            "data.scale": args.scale,
            **parse_sets(args.pretrain_set),
        }
        model = str(pretrain("disinr", mri_scans(phantoms, sim, 6), args.output, over))
        print(
            json.dumps(
                {
                    "scale": args.scale,
                    "size": n,
                    "pretrain": over,
                    "pretrain_s": round(time.perf_counter() - t0, 1),
                }
            ),
            flush=True,
        )
    adapt = parse_sets(args.set)

    def psnr(res) -> float:
        return round(evaluate(res.image.abs().cpu(), scan.target.abs().cpu())["psnr"], 2)

    for lr in args.lrs:
        res = run_method("disinr", scan, {"optim.lr": lr, **adapt}, model=model, show_progress=False)
        row = {"method": "disinr", "scale": res.info["data_scale"], "lr": lr, **adapt, "psnr": psnr(res)}
        chosen = {k: res.info[k] for k in CHOSEN if k in res.info}
        print(json.dumps({**row, "steps": res.info.get("chosen_steps"), **chosen}), flush=True)
    if not args.no_references:
        ngp = []
        for seed in args.ngp_seeds:
            ngp.append(psnr(run_method("ngp", scan, {"seed": seed}, show_progress=False)))
            print(json.dumps({"method": "ngp", "seed": seed, "psnr": ngp[-1]}), flush=True)
        if len(ngp) > 1:
            print(
                json.dumps(
                    {"method": "ngp", "seeds": args.ngp_seeds, "mean_psnr": round(sum(ngp) / len(ngp), 2)}
                ),
                flush=True,
            )
        for m in ("tv", "l1wavelet"):
            print(
                json.dumps({"method": m, "psnr": psnr(run_method(m, scan, {}, show_progress=False))}),
                flush=True,
            )


if __name__ == "__main__":
    main()
