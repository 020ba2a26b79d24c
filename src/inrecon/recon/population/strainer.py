"""STRAINER (Vyas et al., NeurIPS 2024): transferable INR features from a shared trunk.

Pre-training fits one network per subject whose first layers (encoding + ``n_shared`` layers) are shared and
whose last layers (the head) are subject-specific; here, like DisINR, through each subject's forward model so that
every population method sees the same data (raw measurements). At test time the shared trunk initialises a new
network with a freshly initialised head and *everything* is fine-tuned (``freeze_trunk=True`` gives the ablation
of DisINR's Table 4). Default backbone: the hash grid, as DisINR's comparison reproduces every baseline on NGP;
``backbone=siren`` with ``width=256`` is STRAINER's original (6 hidden sine layers, first 5 shared).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.holdout import Built, data_identity, fit_with_stopping
from inrecon.errors import InreconError
from inrecon.models.encodings import FourierFeaturesConfig
from inrecon.models.fields import grid_coords
from inrecon.models.population import DisINRConfig as ArchConfig
from inrecon.models.population import StrainerNetwork
from inrecon.physics.measurement import make_problem
from inrecon.recon.population.common import (
    AdaptConfig,
    PopulationPretrainConfig,
    PretrainConfig,
    SubjectSet,
    check_compatible,
    load_model,
    pretrain_joint,
    rank_world,
    save_model,
)
from inrecon.recon.registry import ReconResult, register

__all__ = ["StrainerAdaptConfig", "StrainerPretrainConfig", "pretrain_strainer", "reconstruct_strainer"]


@dataclass
class StrainerPretrainConfig(PopulationPretrainConfig):
    """A trunk of ``n_shared`` layers of ``width`` units shared by all subjects, heads of ``n_head`` layers."""

    width: int = 128
    n_shared: int = 5
    n_head: int = 1

    def arch(self) -> ArchConfig:
        return ArchConfig(
            backbone=self.backbone,
            hash=self.hash_config(),
            fourier=FourierFeaturesConfig(n_frequencies=self.fourier_frequencies),
            siren_w0=self.siren_w0,
        )


@dataclass
class StrainerAdaptConfig(AdaptConfig):
    """Fine-tuning of the whole network (``freeze_trunk=True``: only the new head, the Table 4 ablation)."""

    freeze_trunk: bool = False


def pretrain_strainer(
    scans,
    cfg: StrainerPretrainConfig,
    output,
    *,
    names=None,
    show_progress=None,
    checkpoint_dir=None,
    device=None,
) -> Path:
    """Pre-train STRAINER's shared trunk with one head per subject, from raw measurements."""
    t0 = time.perf_counter()
    subjects = SubjectSet(scans, maps=cfg.maps, names=names)
    dim, ch = len(subjects.image_shape), 2 if subjects.complex_output else 1
    rank, world = rank_world()
    mine = [i for i in range(len(subjects)) if i % world == rank]
    torch.manual_seed(cfg.seed)
    net = StrainerNetwork(
        dim,
        ch,
        list(range(len(subjects))),
        cfg.arch(),
        width=cfg.width,
        n_shared=cfg.n_shared,
        n_head=cfg.n_head,
    )
    for k in list(net.heads.keys()):  # identical init everywhere, then each rank keeps its own heads
        if int(k) not in mine:
            del net.heads[k]
    net = net.to(device or subjects.problems[0].y.device)
    sched = PretrainConfig(
        cfg.steps,
        cfg.lr,
        cfg.lr_decay_every,
        cfg.lr_decay,
        cfg.subjects_per_step,
        cfg.loss,
        coord_batch=cfg.coord_batch,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every,
    )
    fp = config_fingerprint(
        {
            "method": "strainer",
            "cfg": asdict(cfg),
            "rank": rank,
            "world": world,
            "data": [data_identity(p) for p in subjects.problems],
        }
    )
    hist = pretrain_joint(
        net,
        subjects,
        sched,
        shared_params=net.shared_parameters(),
        subject_ids=mine,
        show_progress=show_progress,
        desc="STRAINER pre-train",
        checkpoint_path=Path(checkpoint_dir) / f"strainer_pretrain.rank{rank}.pt" if checkpoint_dir else None,
        fingerprint=fp,
    )
    meta = {
        "method": "strainer",
        "config": asdict(cfg),
        "architecture": asdict(cfg.arch()),
        "signature": subjects.signature,
        "trained_on": subjects.names,
        "n_subjects": len(subjects),
        "pretrain_seconds": time.perf_counter() - t0,
        "history": hist,
        "n_parameters_shared": sum(p.numel() for p in net.shared_parameters()),
    }
    if rank == 0:
        save_model(output, net, meta, prefix_filter=("encoding.", "trunk."))
    return Path(output)


def reconstruct_strainer(scan, cfg: StrainerAdaptConfig, *, model, show_progress=None, checkpoint_dir=None):
    state, meta = load_model(model)
    if meta.get("method") != "strainer":
        raise InreconError(
            f"{model} is a {meta.get('method')!r} model, not STRAINER",
            f"use --method {meta.get('method')} with it",
        )
    check_compatible(meta, scan, str(model))
    pc = meta["config"]
    problem = make_problem(scan, cfg.maps)
    device = problem.y.device
    coords = grid_coords(problem.image_shape, device=device)
    sig = meta["signature"]

    def build() -> Built:
        torch.manual_seed(cfg.seed)
        net = StrainerNetwork(
            len(sig["image_shape"]),
            sig["channels"],
            [],
            ArchConfig.from_dict(meta["architecture"]),
            width=pc["width"],
            n_shared=pc["n_shared"],
            n_head=pc["n_head"],
        ).to(device)
        net.load_state_dict(state, strict=False)
        sid = net.add_subject()
        plan = net.plan(coords)
        if cfg.freeze_trunk:
            for p in net.shared_parameters():
                p.requires_grad_(False)

        def forward():
            out = net(plan, sid)
            image = (
                torch.view_as_complex(out.float().contiguous()) if problem.complex_output else out[:, 0]
            ).reshape(problem.image_shape)
            return image, problem.predict(image)

        params = [p for p in net.parameters() if p.requires_grad]
        return Built(net, forward, [{"params": params}])

    ocfg, ocfg_stop = cfg.optim(), cfg.stop_config()
    image, info, built = fit_with_stopping(
        problem,
        build,
        ocfg,
        ocfg_stop,
        run_id={"method": "strainer", "cfg": asdict(cfg), "model": str(model)},
        checkpoint_dir=checkpoint_dir,
        show_progress=show_progress,
        desc="STRAINER",
    )
    info["n_parameters_trainable"] = sum(p.numel() for g in built.groups for p in g["params"])
    return ReconResult(image=image, method="strainer", config=asdict(cfg), info=info)


@register(
    "strainer",
    StrainerAdaptConfig,
    ("mri", "ct"),
    "STRAINER: shared pre-trained trunk + fresh head, all weights fine-tuned (needs --model)",
    needs_model=True,
)
def _strainer(scan, cfg, *, show_progress=None, model=None, checkpoint_dir=None) -> ReconResult:
    if model is None:
        raise InreconError("STRAINER needs a pre-trained model", "pass --model MODEL (from inrecon pretrain)")
    return reconstruct_strainer(
        scan, cfg, model=model, show_progress=show_progress, checkpoint_dir=checkpoint_dir
    )
