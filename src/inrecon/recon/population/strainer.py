"""STRAINER (Vyas et al., NeurIPS 2024): transferable INR features from a shared trunk.

Pre-training fits one network per subject whose first layers (encoding + ``n_shared`` layers) are shared and
whose last layers (the head) are subject-specific; here, like DisINR, through each subject's forward model so that
every population method sees the same data (raw measurements). At test time the shared trunk initialises a new
network with a freshly initialised head and *everything* is fine-tuned (``freeze_trunk=True`` gives the ablation
of DisINR's Table 4). Default backbone: the hash grid, as DisINR's comparison reproduces every baseline on NGP;
``arch.backbone=siren`` with ``width=256`` is STRAINER's original (6 hidden sine layers, first 5 shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inrecon.config import NonNegInt, PosInt, config_from_dict
from inrecon.models.population import PopulationArch, StrainerNetwork
from inrecon.physics.measurement import measure
from inrecon.recon.population import common
from inrecon.recon.registry import Context, MethodSpec, Pretrainer, ReconResult

__all__ = [
    "STRAINER",
    "StrainerAdaptConfig",
    "StrainerPretrainConfig",
    "pretrain_strainer",
    "reconstruct_strainer",
]


@dataclass
class StrainerPretrainConfig(common.PopulationPretrainConfig):
    """A trunk of ``n_shared`` layers of ``width`` units shared by all subjects, heads of ``n_head`` layers."""

    width: PosInt = 128
    """Units of every trunk and head layer."""
    n_shared: PosInt = 5
    """Shared trunk layers."""
    n_head: NonNegInt = 1
    """Subject-specific hidden layers before the output."""


@dataclass
class StrainerAdaptConfig(common.AdaptConfig):
    """Fine-tuning of the whole network from the shared trunk and a fresh head."""

    freeze_trunk: bool = False
    """Train only the new head (the Table 4 ablation)."""


def _net_factory(width: int, n_shared: int, n_head: int):
    def make(dim, ch, ids, arch: PopulationArch):
        return StrainerNetwork(dim, ch, ids, arch, width=width, n_shared=n_shared, n_head=n_head)

    return make


def pretrain_strainer(scans, cfg: StrainerPretrainConfig, output, **run) -> Path:
    """Pre-train STRAINER's shared trunk with one head per subject from raw measurements; ``run``: ``names``,
    ``show_progress``, ``checkpoint_dir``."""
    net = _net_factory(cfg.width, cfg.n_shared, cfg.n_head)
    return common.pretrain_population("strainer", net, scans, cfg, output, **run)


def reconstruct_strainer(scan, cfg: StrainerAdaptConfig, ctx: Context) -> ReconResult:
    """Fine-tune a STRAINER trunk with a fresh head on ``scan`` (compatibility checked before any work)."""
    common.require_model(ctx, "strainer")
    state, meta = common.load_model(ctx.model, "strainer", scan)  # compatibility checked before any work
    cfg = common.resolve_data_scale(cfg, meta, str(ctx.model))
    meas = measure(scan, cfg.data)
    pc, sig = meta["config"], meta["signature"]
    make = _net_factory(pc["width"], pc["n_shared"], pc["n_head"])
    arch = config_from_dict(PopulationArch, meta["architecture"])

    def build():
        return common.adapted_model(
            lambda: make(len(sig["image_shape"]), sig["channels"], [], arch),
            state,
            meas,
            freeze=cfg.freeze_trunk,
            seed=cfg.seed,
            wd_enc=cfg.optim.wd_enc,
            wd_mlp=cfg.optim.wd_mlp,
        )

    return common.adapt("strainer", scan, meas, build, cfg, ctx)


STRAINER = MethodSpec(
    "strainer",
    reconstruct_strainer,
    StrainerAdaptConfig,
    ("mri", "ct"),
    "STRAINER: shared pre-trained trunk + fresh head, all weights fine-tuned (needs --model)",
    needs_model=True,
    pretrain=Pretrainer(
        StrainerPretrainConfig,
        pretrain_strainer,
        distributed=True,
        summary="shared trunk + one head per subject",
    ),
    modality_defaults=common.ADAPT_MODALITY_DEFAULTS,
)
