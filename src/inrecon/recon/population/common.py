"""What the population methods (DisINR, STRAINER, Meta) share.

- :class:`SubjectSet`: the measurement problems of N pre-training subjects, checked to be one modality, one image
  grid and one channel layout, each with its own forward operator.
- Model files: weights in ``safetensors`` (no pickle) with a JSON header holding the architecture config, what it
  was trained on, for how long, and the inrecon version; :func:`check_compatible` refuses a scan of another
  modality, grid or channel layout *before* any work.
- :func:`pretrain_joint`: the joint optimisation of shared weights and per-subject weights from raw measurements
  (DisINR Algorithm 1; also STRAINER's shared trunk with per-subject heads), subjects drawn in seeded mini-batches,
  checkpointed, and optionally data-parallel with ``torch.distributed``: subjects are sharded across ranks (subject
  ``i`` lives on rank ``i % world``), each rank holds only its own subject weights, and the shared gradients are
  summed across ranks so that every rank takes the identical Adam step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inrecon import __version__
from inrecon.data.atomic import atomic_path
from inrecon.engine.checkpoint import load_checkpoint, save_checkpoint
from inrecon.engine.losses import data_loss
from inrecon.errors import FileFormatError, InreconError
from inrecon.models.fields import grid_coords
from inrecon.physics.measurement import Problem, make_problem
from inrecon.progress import progress

__all__ = [
    "AdaptConfig",
    "PopulationPretrainConfig",
    "PretrainConfig",
    "SubjectSet",
    "check_compatible",
    "load_model",
    "pretrain_joint",
    "rank_world",
    "save_model",
    "scan_signature",
]


def scan_signature(scan) -> dict:
    """What a model must agree with: modality, image grid, output channels and coil count (MRI)."""
    sig = {"modality": scan.modality, "image_shape": list(scan.image_shape)}
    sig["channels"] = 2 if scan.modality == "mri" else 1
    return sig


def check_compatible(meta: dict, scan, path: str = "model") -> None:
    """Raise :class:`InreconError` when ``scan`` cannot be reconstructed with a model described by ``meta``."""
    want = meta.get("signature", {})
    have = scan_signature(scan)
    if want.get("modality") != have["modality"]:
        raise InreconError(
            f"{path} was trained on {want.get('modality')} data but the scan is {have['modality']}",
            f"pre-train a model on {have['modality']} scans (inrecon pretrain) and use that one",
        )
    if list(want.get("image_shape", [])) != have["image_shape"]:
        raise InreconError(
            f"{path} was trained for images of shape {tuple(want.get('image_shape', []))} but the scan's grid is "
            f"{tuple(have['image_shape'])}",
            "pre-train on scans with the same matrix size (or resample the scan to it)",
        )
    if want.get("channels") != have["channels"]:
        raise InreconError(
            f"{path} outputs {want.get('channels')} channel(s) but this scan needs {have['channels']}",
            "use a model trained for this modality",
        )


def save_model(
    path: str | os.PathLike, module: nn.Module, meta: dict, prefix_filter: Sequence[str] | None = None
):
    """Write ``module``'s weights (optionally only keys starting with ``prefix_filter``) and ``meta`` atomically."""
    from safetensors.torch import save_file

    state = {
        k: v.detach().contiguous().cpu()
        for k, v in module.state_dict().items()
        if prefix_filter is None or any(k.startswith(p) for p in prefix_filter)
    }
    meta = {**meta, "inrecon_version": __version__}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"inrecon": json.dumps(meta, default=str)})
    return Path(path)


def load_model(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, meta)`` from a model file written by :func:`save_model`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    p = Path(path)
    if not p.is_file():
        raise FileFormatError(
            f"model file {str(p)!r} does not exist", "pass the file written by inrecon pretrain"
        )
    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FileFormatError(
            f"{p} is not a readable inrecon model ({exc.__class__.__name__}: {str(exc)[:80]})",
            "re-run inrecon pretrain; model files are safetensors written by inrecon",
        ) from None
    if "inrecon" not in header:
        raise FileFormatError(f"{p} has no inrecon metadata", "use a model file written by inrecon pretrain")
    return state, json.loads(header["inrecon"])


class SubjectSet:
    """Pre-training subjects: one :class:`Problem` per scan, all on one grid with one channel layout."""

    def __init__(self, scans: Sequence, maps: str = "auto", names: Sequence[str] | None = None):
        if len(scans) == 0:
            raise InreconError("no pre-training scans were given", "pass at least one scan with --data")
        sig0 = scan_signature(scans[0])
        for i, s in enumerate(scans):
            sig = scan_signature(s)
            if sig != sig0:
                raise InreconError(
                    f"pre-training scan {i} ({(names or [None] * len(scans))[i] or i}) is {sig} but scan 0 is {sig0}",
                    "pre-train on scans of one modality and one matrix size",
                )
        self.signature = sig0
        self.problems: list[Problem] = [make_problem(s, maps) for s in scans]
        self.names = list(names) if names else [f"subject{i}" for i in range(len(scans))]
        self.image_shape = tuple(sig0["image_shape"])
        self.complex_output = sig0["channels"] == 2

    def __len__(self) -> int:
        return len(self.problems)


@dataclass
class PretrainConfig:
    """Joint pre-training (DisINR Algorithm 1; paper: Adam, lr 1e-3 halved every 1000 steps, 4000 steps)."""

    steps: int = 4000
    lr: float = 1e-3
    lr_decay_every: int = 1000
    lr_decay: float = 0.5
    subjects_per_step: int = 4
    loss: str = "mse"
    delta: float = 1e-3
    coord_batch: int = 2**18  # 3D: coordinates per subject per step
    seed: int = 0
    checkpoint_every: int = 200
    beta2: float = 0.99  # Adam as instant-NGP has it for hash grids (measured: benchmarks/RESULTS.md)
    adam_eps: float = 1e-15


@dataclass
class PopulationPretrainConfig:
    """What DisINR and STRAINER pre-training share: the encoding of the coordinates and the schedule
    (DisINR paper: Adam, lr 1e-3 halved every 1000 steps, 4000 steps)."""

    backbone: str = "hash"
    n_levels: int = 16
    n_features: int = 2
    log2_table_size: int = 0
    base_resolution: int = 16
    per_level_scale: float = 1.5
    fourier_frequencies: int = 10
    siren_w0: float = 30.0
    steps: int = 4000
    lr: float = 1e-3
    lr_decay_every: int = 1000
    lr_decay: float = 0.5
    subjects_per_step: int = 4
    loss: str = "mse"
    coord_batch: int = 2**18
    maps: str = "auto"
    seed: int = 0
    checkpoint_every: int = 200
    beta2: float = 0.99  # Adam as instant-NGP has it for hash grids (measured: benchmarks/RESULTS.md)
    adam_eps: float = 1e-15

    def hash_config(self):
        from inrecon.models.encodings import HashGridConfig

        return HashGridConfig(
            self.n_levels,
            self.n_features,
            self.log2_table_size or None,
            self.base_resolution,
            self.per_level_scale,
        )

    def schedule(self) -> PretrainConfig:
        """The :class:`PretrainConfig` fields this config sets (the rest keep their defaults)."""
        names = {f.name for f in dataclasses.fields(PretrainConfig)}
        return PretrainConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


@dataclass
class AdaptConfig:
    """Test-time fitting of a pre-trained model to one scan, with the shared hold-out stopping rule."""

    steps: int = 4000
    lr: float = 1e-3
    lr_decay_every: int = 1000
    lr_decay: float = 0.5
    loss: str = "mse"
    delta: float = 1e-3
    stop: str = "holdout"
    holdout_fraction: float = 0.2
    patience: int = 300
    final: str = "refit"
    maps: str = "auto"
    seed: int = 0
    eval_every: int = 25
    checkpoint_every: int = 200
    beta2: float = 0.99  # Adam as instant-NGP has it for hash grids (measured: benchmarks/RESULTS.md)
    adam_eps: float = 1e-15

    def optim(self, steps: int | None = None):
        from inrecon.engine.trainer import OptimConfig

        return OptimConfig(
            steps=steps or self.steps,
            lr=self.lr,
            lr_decay_every=self.lr_decay_every,
            lr_decay=self.lr_decay,
            beta2=self.beta2,
            eps=self.adam_eps,
            loss=self.loss,
            delta=self.delta,
            eval_every=self.eval_every,
            checkpoint_every=self.checkpoint_every,
        )

    def stop_config(self):
        from inrecon.engine.holdout import StopConfig

        return StopConfig(self.stop, self.holdout_fraction, self.patience, self.final, self.seed)


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the torch.distributed group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def batch_schedule(n_subjects: int, per_step: int, step: int, seed: int) -> list[int]:
    """The subjects of global step ``step`` (identical on every rank): a seeded draw without replacement."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    k = min(per_step, n_subjects)
    return sorted(torch.randperm(n_subjects, generator=g)[:k].tolist())


def pretrain_joint(
    net: nn.Module,
    subjects: SubjectSet,
    cfg: PretrainConfig,
    *,
    shared_params: Sequence[nn.Parameter],
    subject_ids: Sequence[int] | None = None,
    show_progress: bool | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    fingerprint: str = "",
    desc: str = "pre-train",
) -> dict:
    """Jointly fit shared and per-subject weights of ``net`` to every subject's measurements.

    ``net(coords_or_plan, i)`` must return the field values of subject ``i`` (``(n, channels)``); ``net`` holds
    the weights of the subjects in ``subject_ids`` (default: all; under torch.distributed: those with
    ``i % world == rank``). Returns the history (loss per logged step, wall time).
    """
    rank, world = rank_world()
    n = len(subjects)
    mine = set(subject_ids if subject_ids is not None else [i for i in range(n) if i % world == rank])
    device = next(net.parameters()).device
    shape = subjects.image_shape
    n_pix = math.prod(shape)
    coords = grid_coords(shape, device=device)
    full_batch = n_pix <= cfg.coord_batch
    plan = net.plan(coords) if full_batch and hasattr(net, "plan") else coords
    opt = torch.optim.Adam(
        net.parameters(),
        lr=cfg.lr,
        betas=(0.9, cfg.beta2),
        eps=cfg.adam_eps,
        fused=True if device.type in ("cpu", "cuda") else None,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    hist: dict[str, list] = {"step": [], "loss": []}
    start, elapsed = 0, 0.0
    if checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path, fingerprint)
        if state is not None:
            net.load_state_dict(state["module"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            hist, start, elapsed = state["history"], state["step"], state["seconds"]
    t0 = time.perf_counter() - elapsed
    shared = list(shared_params)
    bar = progress(
        range(start, cfg.steps), total=cfg.steps, initial=start, desc=desc, show=show_progress and rank == 0
    )
    for step in bar:
        batch = batch_schedule(n, cfg.subjects_per_step, step, cfg.seed)
        local = [i for i in batch if i in mine]
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        if local:
            if full_batch:
                idx = None
                inp = plan
            else:
                g = torch.Generator().manual_seed(cfg.seed * 7919 + step)
                idx = torch.randint(0, n_pix, (cfg.coord_batch,), generator=g).to(device)
                inp = coords[idx]
            for i in local:
                out = net(inp, i)
                prob = subjects.problems[i]
                if idx is None:
                    img = (
                        torch.view_as_complex(out.float().contiguous())
                        if subjects.complex_output
                        else out[:, 0]
                    ).reshape(shape)
                    loss = data_loss(prob.predict(img), prob.y, cfg.loss, cfg.delta)
                else:  # volume fitting in coordinate batches (identity measurement)
                    loss = data_loss(out[:, 0], prob.y[idx], cfg.loss, cfg.delta)
                total = total + loss / len(batch)
            total.backward()
        if world > 1:
            for p in shared:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
            tl = total.detach().clone()
            torch.distributed.all_reduce(tl, op=torch.distributed.ReduceOp.SUM)
        else:
            tl = total.detach()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            hist["step"].append(step)
            hist["loss"].append(float(tl))
        if bar is not None and not bar.disable and step % 5 == 0:
            bar.set_postfix(loss=f"{float(tl):.3g}")
        done = step + 1
        if checkpoint_path is not None and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            save_checkpoint(
                checkpoint_path,
                {
                    "fingerprint": fingerprint,
                    "step": done,
                    "module": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "history": hist,
                    "seconds": time.perf_counter() - t0,
                },
            )
    hist["seconds"] = time.perf_counter() - t0
    return hist
