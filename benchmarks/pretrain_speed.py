"""Population pre-training step time: the step as it is now vs the per-subject reference, in one run.

One pre-training step (DisINR or STRAINER, Algorithm 1 of the DisINR paper) evaluates ``subjects_per_step``
subjects through their own measurements. The reference step is the step as it was before issue 11: the paper's
architecture in float32, the shared encoder evaluated once per subject. The library's step is what `inrecon
pretrain` runs on the modality (its pre-training defaults: on CT the grid-limited hash, and bf16 products where the
hardware has them; ``--library-set`` / ``--mlp-dtype`` change it), with the shared features computed once per step
and their gradients summed by autograd. Both run the same seeded subjects, interleaved, and the JSON gives the
median step time, subjects per second, the ratio, and -- when the two architectures agree, so that the weights
can be shared -- the largest loss difference over the timed steps.

Data: simulated body-CT phantoms (``inrecon.data.phantoms.body_ct_phantom``, seeds 0..n-1), DisINR's fan
geometry scaled to the grid, 60 views, noise-free; or brain phantoms with 8 simulated coils, 1D Cartesian AF 4.

    python benchmarks/pretrain_speed.py --modality ct --size 128 --subjects 8 --per-step 4 --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from inrecon.cli.common import parse_sets
from inrecon.config import build_config
from inrecon.data.phantoms import body_ct_phantom, brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.data.shared import disinr_fan_geometry
from inrecon.engine.losses import data_loss
from inrecon.engine.trainer import StepOutput, make_optimizer
from inrecon.models.fields import for_grid
from inrecon.models.population import DisINRNetwork, StrainerNetwork
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.methods import METHODS
from inrecon.recon.population.common import PopulationTask, SubjectSet, batch_schedule, to_image
from inrecon.recon.population.disinr import DisINRPretrainConfig
from inrecon.report.core import collect_environment
from inrecon.runtime import fast_bf16, resolve_device


class PerSubjectTask(PopulationTask):
    """The reference: the shared encoder evaluated again for every subject of the step."""

    def step(self, step: int) -> StepOutput:
        batch = batch_schedule(len(self.subjects), self.cfg.subjects_per_step, step, self.cfg.seed)
        total = torch.zeros((), device=self.device)
        for i in batch:
            m = self.subjects.measurements[i]
            out = self.module(self.inputs, i)
            pred = m.predict(to_image(out, self.shape, self.subjects.complex_output))
            total = total + data_loss(pred, m.y, self.cfg.loss.kind, self.cfg.loss.delta) / len(batch)
        return StepOutput(total)


def scans(modality: str, size: int, n: int):
    if modality == "ct":
        geom = disinr_fan_geometry((size, size))
        return [
            simulate_ct(body_ct_phantom((size, size), seed=s), geom, full_scan_angles(60)) for s in range(n)
        ]
    mask = cartesian_1d((size, size), af=4, acs=max(8, size // 12))
    return [
        simulate_mri(brain_phantom((size, size), seed=s), n_coils=8, mask=mask, snr_db=30.0, seed=s)
        for s in range(n)
    ]


def time_steps(task, steps: int, offset: int) -> tuple[list[float], list[float]]:
    opt, _ = make_optimizer(task.param_groups(), task.cfg.optim, steps)  # the library's (fused) Adam
    times, losses = [], []
    for k in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = task.step(offset + k)
        out.loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(out.loss.detach()))
    return times, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modality", choices=("ct", "mri"), default="ct")
    ap.add_argument("--network", choices=("disinr", "strainer"), default="disinr")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--per-step", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round (after 3 warm-up steps)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of reference and library steps")
    ap.add_argument(
        "--mlp-dtype",
        choices=("default", "auto", "float32", "bfloat16"),
        default="default",
        help="the library step's arch.mlp_dtype (default: the modality default; the reference is float32)",
    )
    ap.add_argument(
        "--library-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pre-training config of the library step only, e.g. arch.hash.n_levels=8 (the reference keeps the "
        "defaults; with another architecture the loss difference is not reported)",
    )
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)

    cfg = build_config(DisINRPretrainConfig, {"subjects_per_step": args.per_step, "seed": 0})
    subjects = SubjectSet([s.to(dev) for s in scans(args.modality, args.size, args.subjects)], cfg.data)
    arch = replace(for_grid(cfg.arch, subjects.image_shape), mlp_dtype="float32")
    ch = 2 if subjects.complex_output else 1
    make = DisINRNetwork if args.network == "disinr" else StrainerNetwork
    ids = list(range(len(subjects)))
    lib_over = parse_sets(args.library_set)  # as `inrecon pretrain --set` reads them
    # the library step: what `inrecon pretrain` uses on this modality (its modality defaults), plus --library-set
    lib_cfg = METHODS["disinr"].pretrain.build(
        args.modality, {"subjects_per_step": args.per_step, "seed": 0, **lib_over}
    )
    fast = for_grid(lib_cfg.arch, subjects.image_shape)
    if args.mlp_dtype != "default":
        fast = replace(fast, mlp_dtype=args.mlp_dtype)
    torch.manual_seed(0)
    nets = {"reference": make(2, ch, ids, arch).to(dev), "library": make(2, ch, ids, fast).to(dev)}
    same_arch = replace(fast, mlp_dtype="float32") == arch
    if same_arch:
        nets["library"].load_state_dict(nets["reference"].state_dict())
    tasks = {
        "reference": PerSubjectTask(nets["reference"], subjects, cfg, set(ids)),
        "library": PopulationTask(nets["library"], subjects, lib_cfg, set(ids)),
    }
    times: dict[str, list[float]] = {k: [] for k in tasks}
    losses: dict[str, list[float]] = {k: [] for k in tasks}
    for task in tasks.values():
        time_steps(task, 3, 0)  # warm-up (plans, allocator)
    for r in range(args.rounds):
        for k, task in tasks.items():
            t, loss = time_steps(task, args.steps, 3 + r * args.steps)
            times[k] += t
            losses[k] += loss
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "benchmark": "pretrain_step",
        "network": args.network,
        "data": f"{args.subjects} simulated {args.modality.upper()} phantoms, {args.size}x{args.size}"
        + (", DisINR fan geometry, 60 views, noise-free" if args.modality == "ct" else ", 8 coils, AF 4"),
        "subjects_per_step": args.per_step,
        "library_mlp_dtype": fast.mlp_dtype,
        "library_hash": {
            "n_levels": fast.hash.n_levels,
            "per_level_scale": round(fast.hash.per_level_scale, 3),
        },
        "fast_bf16": fast_bf16(dev),
        "library_overrides": lib_over,
        "timed_steps": args.steps * args.rounds,
        "median_step_ms": {k: round(1000 * v, 1) for k, v in med.items()},
        "subjects_per_second": {k: round(args.per_step / v, 1) for k, v in med.items()},
        "speedup": round(med["reference"] / med["library"], 2),
        "max_loss_difference": None
        if not same_arch
        else max(abs(a - b) for a, b in zip(losses["reference"], losses["library"])),
        "threads": torch.get_num_threads(),
        "machine": collect_environment(device=str(dev)),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
