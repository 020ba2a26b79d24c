"""What the population methods (DisINR, STRAINER, Meta) share.

- :class:`SubjectSet`: the measurements of N pre-training subjects, checked to be one modality, one image grid
  and one channel layout, each with its own forward operator.
- Model files: weights in ``safetensors`` (no pickle) with a JSON header holding the architecture, the config,
  what it was trained on, for how long, and the inrecon version; :func:`check_compatible` refuses a scan of
  another modality, grid or channel layout *before* any work.
- :func:`pretrain_joint`: the joint optimisation of shared and per-subject weights from raw measurements
  (DisINR Algorithm 1; STRAINER's shared trunk with per-subject heads) as a :class:`PopulationTask` of the one
  engine: subjects drawn in seeded mini-batches, checkpointed, and optionally data-parallel with
  ``torch.distributed`` (subject ``i`` lives on rank ``i % world``; shared gradients are summed across ranks,
  so every rank takes the identical step).
- :func:`adapted_model`: test-time adaptation of a pre-trained shared part with a fresh subject part, as a
  :class:`~inrecon.engine.fit.Model` for the one stopping rule.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from inrecon import __version__
from inrecon.config import PosInt, config_to_dict
from inrecon.data.atomic import atomic_path
from inrecon.data.augment import AugmentConfig, augment_scans
from inrecon.engine.callbacks import AllReduceShared, Progress
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.fit import Model
from inrecon.engine.holdout import FitConfig, data_identity, fit_with_holdout, measurement_prior
from inrecon.engine.losses import LossConfig, data_loss
from inrecon.engine.regularizers import PriorConfig
from inrecon.engine.splitting import SplittingConfig
from inrecon.engine.trainer import Checkpoint, MonitorConfig, OptimConfig, StepOutput, Task, train
from inrecon.errors import FileFormatError, InreconError
from inrecon.models.fields import for_grid, grid_coords
from inrecon.models.population import PopulationArch
from inrecon.physics.measurement import Measurement, MeasurementConfig, measure
from inrecon.recon.inr.ngp import NGP_MODALITY_DEFAULTS, after_fit, decay_groups, splitting_applies
from inrecon.recon.registry import Context, ReconResult

__all__ = [
    "ADAPT_MODALITY_DEFAULTS",
    "AdaptConfig",
    "PopulationPretrainConfig",
    "PopulationTask",
    "SubjectSet",
    "adapt",
    "adapted_model",
    "batch_schedule",
    "check_compatible",
    "counts_weighted",
    "load_model",
    "pretrain_joint",
    "rank_world",
    "require_model",
    "resolve_data_scale",
    "save_model",
    "scan_signature",
]


def counts_weighted() -> MeasurementConfig:
    """The population methods' data term: ramp-preconditioned and, where a CT scan records its photons per ray,
    weighted by the expected counts (identical to ``ramp`` on scans that record none; MRI is unaffected)."""
    return MeasurementConfig(ct_weighting="ramp+counts")


ADAPT_MODALITY_DEFAULTS = {
    "ct": {
        k: v
        for k, v in NGP_MODALITY_DEFAULTS["ct"].items()
        if k not in ("optim.lr", "data.ct_supersample") and not k.startswith("splitting.")
    },
    "mri": {k: v for k, v in NGP_MODALITY_DEFAULTS["mri"].items() if k.startswith("prior.")},
}
"""CT defaults of every population method's test-time fit: NGP's counts-weighted, view-held-out data term and relative
TV prior (:data:`~inrecon.recon.inr.ngp.NGP_MODALITY_DEFAULTS`, without its learning rate: DisINR's 1e-3 and 1e-2
gave the same curve, and without its finer image grid on a GPU, which DisINR alone takes: unmeasured for the others).
Measured for DisINR (``benchmarks/disinr_ct.py``, lungdx 128^2, 60 fan views, 1e5 photons, pre-trained on 16
noisy A0001 slices): A0001 slice 30 (tuning) 23.69 -> 30.64 dB; prior weight 0.003 / 0.01 / 0.03
-> 30.06 / 30.64 / 30.58 dB; A0002 slice 15 (confirmation, other scanner) 22.78 -> 31.31 dB. STRAINER and Meta share
them unmeasured (the same data term and prior for every method of a comparison). Since 2026-12 the prior's weight is
NGP's ``auto`` (chosen per scan by the hold-out rule): DisINR on the quick demo's noise-free phantoms 38.10 -> 39.96
dB; on the model above, A0001 slice 30 31.16 -> 30.05 dB (it chose 0.001, as NGP does on that scan) and A0002 slice
15 31.76 -> 31.76 dB; with held-out views spread over the angles (``--set data.ct_split=spread``, not a default:
NGP's choice with it failed on independent files) 29.01 -> 31.10 dB in domain, 31.69 -> 31.72 out of domain (the
64-unit model of benchmarks/RESULTS.md). NGP's Hann-apodised ramp (``data.ct_ramp_filter="hann"``) is taken over
since 2026-12-04 (the pre-training keeps the plain ramp; a model pre-trained with Hann gained nothing): DisINR on
the native-grid populations, tuning slices A0001[30] / A0002[15] +0.26 / +0.72 dB (8-level CT default) and +2.47 /
+0.58 (paper architecture); confirmation slices A0001[45] / A0002[5] / A0002[25] +2.47 / +0.97 / +0.37 and +1.34 /
+0.71 / +0.48 dB. STRAINER and Meta share it unmeasured. MRI adaptation takes NGP's smooth-phase prior
(``prior.phase``; fixed 0.003 at first, DisINR on the quick demo's MRI phantoms 26.95 -> 31.26 dB; since 2026-12-03
NGP's ``auto``), and since 2026-12-06 (stop 52) NGP's whole MRI prior search: the TV weight (``prior.tv="auto"``
over 0 / 0.0003 / 0.001) beside the phase prior, the lowest held-out loss winning. DisINR, phase prior alone ->
both: the real 8-coil brain 33.88 -> 35.12 dB (TV 1e-3 chosen; NGP 35.11, TV-MRI 35.14), the dipy T1 slice at
128^2 Cartesian AF 6 34.08 -> 33.63 (TV 1e-3 displaced the phase prior by 0.9 % of the held-out loss), AF 8 and
Poisson AF 8 32.87 / 37.53 unchanged, the quick demo's phantoms 29.56 / 34.26 unchanged (the phase prior kept),
at up to twice the adaptation's time (benchmarks/RESULTS.md). STRAINER and Meta share it unmeasured. It does not
take NGP's MRI data scale, learning rate and hash-table weight decay: a frozen shared
pair was pre-trained on data at the population's own scale: the adaptation normalises the scan as the model
file records its pre-training did (``data.scale="model"``, :func:`resolve_data_scale`)."""

POPULATION_ALIASES = {
    "fourier_frequencies": "arch.fourier.n_frequencies",
    "loss": "loss.kind",
    "adam_eps": "optim.eps",
    "maps": "data.maps",
}
ADAPT_ALIASES = {
    "loss": "loss.kind",
    "stop": "stop.rule",
    "holdout_fraction": "stop.fraction",
    "adam_eps": "optim.eps",
    "maps": "data.maps",
}


# --- signatures and model files -------------------------------------------------------------------------------
def scan_signature(scan) -> dict:
    """What a model must agree with: modality, image grid and output channels."""
    return {
        "modality": scan.modality,
        "image_shape": list(scan.image_shape),
        "channels": 2 if scan.modality == "mri" else 1,
    }


def check_compatible(meta: dict, scan, path: str = "model") -> None:
    """Raise :class:`InreconError` when ``scan`` cannot be reconstructed with a model described by ``meta``."""
    want, have = meta.get("signature", {}), scan_signature(scan)
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


def save_model(path: str | os.PathLike, module: nn.Module, meta: dict, prefixes: Sequence[str] | None = None):
    """Write ``module``'s weights (only keys starting with one of ``prefixes``, when given) and ``meta``."""
    from safetensors.torch import save_file

    state = {
        k: v.detach().contiguous().cpu()
        for k, v in module.state_dict().items()
        if prefixes is None or any(k.startswith(p) for p in prefixes)
    }
    meta = {**meta, "inrecon_version": __version__}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"inrecon": json.dumps(meta, default=str)})
    return Path(path)


def resolve_data_scale(cfg, meta: dict, path: str = "model"):
    """``cfg`` with ``data.scale`` as the adaptation must normalise the scan's data: ``model`` (the default)
    becomes the scale the model's pre-training used (``max`` for files that record none). An explicit scale
    that differs from a recorded one raises :class:`InreconError`: a frozen shared pair renders images at the
    scale it was trained at, so a mismatch would degrade the fit silently."""
    trained = (meta.get("config") or {}).get("data", {}).get("scale")
    if cfg.data.scale == "model":
        return replace(cfg, data=replace(cfg.data, scale=trained or "max"))
    if trained is not None and trained != cfg.data.scale:
        raise InreconError(
            f"{path} was pre-trained on data normalised with data.scale={trained!r}, but the adaptation uses "
            f"data.scale={cfg.data.scale!r}",
            f"leave data.scale unset (it follows the model) or pre-train with data.scale={cfg.data.scale}",
        )
    return cfg


def load_model(path: str | os.PathLike, method: str | None = None, scan=None) -> tuple[dict, dict]:
    """``(state_dict, meta)`` from a model file; checks it is a ``method`` model compatible with ``scan``."""
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
    meta = json.loads(header["inrecon"])
    if method is not None and meta.get("method") != method:
        raise InreconError(
            f"{path} is a {meta.get('method')!r} model, not {method}",
            f"use --method {meta.get('method')} with it, or a {method} model",
        )
    if scan is not None:
        check_compatible(meta, scan, str(path))
    return state, meta


# --- subjects -------------------------------------------------------------------------------------------------
class SubjectSet:
    """Pre-training subjects: one :class:`Measurement` per scan, all on one grid with one channel layout."""

    def __init__(self, scans: Sequence, data: MeasurementConfig, names: Sequence[str] | None = None):
        if len(scans) == 0:
            raise InreconError("no pre-training scans were given", "pass at least one scan with --data")
        if data.ct_supersample != 1:
            raise InreconError(
                f"pre-training models each scan on its own grid, but data.ct_supersample is {data.ct_supersample}",
                "pre-train with data.ct_supersample=1 (an adaptation may still set it)",
            )
        sig0 = scan_signature(scans[0])
        for i, s in enumerate(scans):
            sig = scan_signature(s)
            if sig != sig0:
                name = (names or [None] * len(scans))[i] or i
                raise InreconError(
                    f"pre-training scan {i} ({name}) is {sig} but scan 0 is {sig0}",
                    "pre-train on scans of one modality and one matrix size",
                )
        self.signature = sig0
        self.measurements: list[Measurement] = [measure(s, data) for s in scans]
        self.names = list(names) if names else [f"subject{i}" for i in range(len(scans))]
        self.image_shape = tuple(sig0["image_shape"])
        self.complex_output = sig0["channels"] == 2

    def __len__(self) -> int:
        return len(self.measurements)

    def identity(self) -> list:
        return [data_identity(m) for m in self.measurements]


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the torch.distributed group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def batch_schedule(n_subjects: int, per_step: int, step: int, seed: int) -> list[int]:
    """The subjects of global step ``step`` (identical on every rank): a seeded draw without replacement."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return sorted(torch.randperm(n_subjects, generator=g)[: min(per_step, n_subjects)].tolist())


def to_image(values: torch.Tensor, shape, complex_output: bool) -> torch.Tensor:
    """``(n, channels)`` field values -> an image of ``shape`` (complex from 2 channels)."""
    if complex_output:
        return torch.view_as_complex(values.float().contiguous()).reshape(shape)
    return values[:, 0].reshape(shape)


# --- pre-training ---------------------------------------------------------------------------------------------
@dataclass
class PopulationPretrainConfig:
    """Joint pre-training from raw measurements (DisINR Algorithm 1; paper: Adam, lr 1e-3 halved every 1000
    steps, 4000 steps)."""

    arch: PopulationArch = field(default_factory=PopulationArch)
    """Encodings and layer widths."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=4000, lr=1e-3))
    """Adam as instant-NGP has it for hash grids (beta2 0.99, eps 1e-15: measured, benchmarks/RESULTS.md)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The data term of every subject."""
    prior: PriorConfig = field(default_factory=PriorConfig)
    """Explicit image priors on every subject's image (relative weights, scaled per subject; tv=auto is not
    available in pre-training, and volumes fitted in coordinate batches get none)."""
    subjects_per_step: PosInt = 4
    """Subjects drawn (without replacement) for each step."""
    coord_batch: PosInt = 2**18
    """Volumes larger than this: coordinates per subject per step."""
    data: MeasurementConfig = field(default_factory=counts_weighted)
    """Coil maps (MRI), data weighting (CT: ramp+counts, i.e. counts-weighted where the scans record photons)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Measurement-domain augmentation (CT rotations and mirrors, MRI mirrors and conjugates; exact physics): every
    transformed scan is one more subject."""
    seed: int = 0
    """Seeds the weights and the subject draws."""
    checkpoint_every: PosInt = 200
    """With a checkpoint directory: save every this many steps."""

    ALIASES: ClassVar[dict] = POPULATION_ALIASES


class PopulationTask(Task):
    """One step: the mean data loss of a seeded mini-batch of subjects, each through its own measurement;
    ``net(coords_or_plan, i, shared)`` returns subject ``i``'s field values from the shared features computed
    once per step. Subjects not in ``mine`` (other ranks) are skipped."""

    def __init__(self, net: nn.Module, subjects: SubjectSet, cfg: PopulationPretrainConfig, mine: set[int]):
        self.module, self.subjects, self.cfg, self.mine = net, subjects, cfg, mine
        device = next(net.parameters()).device
        self.shape = subjects.image_shape
        self.n_pix = math.prod(self.shape)
        self.coords = grid_coords(self.shape, device=device)
        self.full = self.n_pix <= cfg.coord_batch
        self.inputs = net.plan(self.coords) if self.full else self.coords
        self.device = device
        if cfg.prior.is_auto():
            term = cfg.prior.auto_terms()[0]
            raise InreconError(
                f"prior.{term}=auto is not available in pre-training (there is no hold-out split)",
                f"give a weight, e.g. --set prior.{term}=0.01",
            )
        self.priors = [measurement_prior(m, cfg.prior) if self.full else None for m in subjects.measurements]

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.module.parameters())}]

    def step(self, step: int) -> StepOutput:
        batch = batch_schedule(len(self.subjects), self.cfg.subjects_per_step, step, self.cfg.seed)
        total = torch.zeros((), device=self.device)
        inputs, idx = self.inputs, None
        if not self.full:
            g = torch.Generator().manual_seed(self.cfg.seed * 7919 + step)
            idx = torch.randint(0, self.n_pix, (self.cfg.coord_batch,), generator=g).to(self.device)
            inputs = self.coords[idx]
        kind, delta = self.cfg.loss.kind, self.cfg.loss.delta
        mine = [i for i in batch if i in self.mine]
        # the shared encoder's features are the same for every subject: computed once per step (autograd sums
        # their gradients over the subjects), not once per subject
        shared = self.module.shared_features(inputs) if mine else None
        for i in mine:
            out = self.module(inputs, i, shared)
            m = self.subjects.measurements[i]
            if idx is None:
                image = to_image(out, self.shape, self.subjects.complex_output)
                loss = data_loss(m.predict(image), m.y, kind, delta)
                if self.priors[i] is not None:
                    loss = loss + self.priors[i](image)
            else:  # volume fitting in coordinate batches (identity measurement)
                loss = data_loss(out[:, 0], m.y[idx], kind, delta)
            total = total + loss / len(batch)
        return StepOutput(total)


def pretrain_joint(
    net: nn.Module,
    subjects: SubjectSet,
    cfg: PopulationPretrainConfig,
    *,
    mine: Sequence[int],
    checkpoint_path: str | os.PathLike | None,
    fingerprint: str,
    show_progress: bool | None,
    desc: str,
) -> dict:
    """Fit shared and per-subject weights of ``net`` to every subject's measurements; returns the history."""
    rank, world = rank_world()
    callbacks = [AllReduceShared(net.shared_parameters())] if world > 1 else []
    callbacks.append(Progress(desc, show_progress and rank == 0))
    ck = Checkpoint(checkpoint_path, fingerprint, cfg.checkpoint_every) if checkpoint_path else None
    run = train(PopulationTask(net, subjects, cfg, set(mine)), cfg.optim, callbacks, checkpoint=ck)
    return {**run.history, "seconds": run.seconds}


def pretrain_population(
    kind: str,
    make_net,
    scans,
    cfg: PopulationPretrainConfig,
    output: str | Path,
    *,
    names=None,
    show_progress=None,
    checkpoint_dir=None,
    extra_meta: dict | None = None,
) -> Path:
    """Pre-train a shared-plus-subject network ``make_net(dim, channels, subject_ids, arch)`` on ``scans`` and
    write the shared part (its ``SHARED_PREFIXES``) to ``output``; ``arch`` is ``cfg.arch`` resolved for the
    subjects' grid (:func:`~inrecon.models.fields.for_grid`), and the model file stores it."""
    t0 = time.perf_counter()
    scans, names = augment_scans(scans, cfg.augment, names)  # refuses what a modality lacks, before any work
    subjects = SubjectSet(scans, cfg.data, names=names)
    dim, ch = len(subjects.image_shape), 2 if subjects.complex_output else 1
    rank, world = rank_world()
    mine = [i for i in range(len(subjects)) if i % world == rank]
    arch = for_grid(cfg.arch, subjects.image_shape)
    torch.manual_seed(cfg.seed)
    net = make_net(dim, ch, list(range(len(subjects))), arch)
    net.drop_subjects_except(mine)  # identical init on every rank, then each keeps its own subjects
    net = net.to(subjects.measurements[0].y.device)
    fp = config_fingerprint(
        {
            "method": kind,
            "cfg": config_to_dict(cfg),
            "rank": rank,
            "world": world,
            "data": subjects.identity(),
        }
    )
    hist = pretrain_joint(
        net,
        subjects,
        cfg,
        mine=mine,
        checkpoint_path=Path(checkpoint_dir) / f"{kind}_pretrain.rank{rank}.pt" if checkpoint_dir else None,
        fingerprint=fp,
        show_progress=show_progress,
        desc=f"{kind} pre-train",
    )
    meta = {
        "method": kind,
        "architecture": config_to_dict(arch),
        "config": config_to_dict(cfg),
        "signature": subjects.signature,
        "trained_on": subjects.names,
        "n_subjects": len(subjects),
        "pretrain_seconds": time.perf_counter() - t0,
        "history": hist,
        "n_parameters_shared": sum(p.numel() for p in net.shared_parameters()),
        "world_size": world,
        **(extra_meta or {}),
    }
    if rank == 0:
        save_model(output, net, meta, prefixes=net.SHARED_PREFIXES)
    return Path(output)


# --- adaptation -----------------------------------------------------------------------------------------------
@dataclass
class AdaptConfig(FitConfig):
    """Test-time fitting of a pre-trained model to one scan, with the one hold-out stopping rule."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(steps=4000, lr=1e-3))
    """Adam (instant-NGP's beta2 0.99, eps 1e-15), lr halved every 1000 steps; wd_enc is the weight decay of the
    trained hash tables (as NGP's), wd_mlp that of every other trained weight."""
    data: MeasurementConfig = field(default_factory=lambda: MeasurementConfig(scale="model"))
    """Coil maps (MRI), the data weighting and the hold-out unit (CT); the data are normalised as the model's
    pre-training normalised its subjects' (``scale="model"``, :func:`resolve_data_scale`)."""
    monitor: MonitorConfig = field(default_factory=lambda: MonitorConfig(eval_every=25))
    """Evaluation, checkpoint and sync intervals."""
    splitting: SplittingConfig = field(default_factory=SplittingConfig)
    """NGP's denoiser prior after the adaptation (:class:`~inrecon.engine.splitting.SplittingConfig`; the
    adapted weights are the splitting's, the shared pair stays frozen where the adaptation froze it); 0: off."""

    ALIASES: ClassVar[dict] = ADAPT_ALIASES


def adapted_model(
    make_net,
    state: dict,
    meas: Measurement,
    *,
    freeze: bool,
    seed: int,
    wd_enc: float,
    wd_mlp: float,
    batch_size: int = 2**18,
    shared_lr_scale: float = 1.0,
) -> Model:
    """A pre-trained network with a freshly initialised (seeded) subject part for ``meas``, as a
    :class:`Model`. With ``freeze`` the shared part is fixed and its features on the grid are computed once
    (unless the grid is a volume fitted in coordinate batches of ``batch_size``); without, it is trained at
    ``shared_lr_scale`` times the subject part's learning rate. Weight decay: ``wd_enc`` on the trained
    positional encodings (hash tables), ``wd_mlp`` on every other trained weight."""
    device = meas.y.device
    torch.manual_seed(seed)
    net = make_net().to(device)
    net.load_state_dict(state, strict=False)
    sid = net.add_subject()
    coords = grid_coords(meas.image_shape, device=device)
    plan = net.plan(coords)
    shared = None
    if freeze:
        for p in net.shared_parameters():
            p.requires_grad_(False)
        if not (meas.pointwise and meas.n_samples > batch_size):
            with torch.no_grad():
                shared = net.shared_features(plan)
    is_table = {id(p) for p in net.table_parameters()}

    def groups_of(params: list, lr_scale: float) -> list[dict]:
        tables = [p for p in params if id(p) in is_table]
        layers = [p for p in params if id(p) not in is_table]
        groups = decay_groups(tables, layers, wd_enc, wd_mlp)
        return groups if lr_scale == 1.0 else [{**g, "lr_scale": lr_scale} for g in groups]

    groups = groups_of(net.subject_parameters(sid), 1.0)
    if not freeze:
        groups += groups_of(net.shared_parameters(), shared_lr_scale)

    def render():
        return to_image(net(plan, sid, shared), meas.image_shape, meas.complex_image)

    @torch.no_grad()
    def render_nograd():
        if not meas.pointwise:
            return render()
        chunk = 2**18
        outs = [net(coords[i : i + chunk], sid)[:, 0] for i in range(0, coords.shape[0], chunk)]
        return torch.cat(outs).reshape(meas.image_shape)

    return Model(net, groups, render, at=lambda c: net(c, sid)[:, 0], render_nograd=render_nograd)


def require_model(ctx: Context, method: str) -> str:
    """The model file of ``ctx``; raises before any work when there is none."""
    if ctx.model is None:
        raise InreconError(
            f"{method} needs a pre-trained model", "pass --model MODEL (from inrecon pretrain)"
        )
    return str(ctx.model)


def adapt(
    method: str,
    scan,
    meas: Measurement,
    build,
    cfg: AdaptConfig,
    ctx: Context,
    batch_size: int = 2**18,
    alternatives: tuple = (),
    label: str = "main",
):
    """Test-time fit of a pre-trained model (``build() -> Model``) to ``meas`` (of ``scan``) with the one stopping
    rule, then NGP's denoiser prior where ``cfg.splitting`` asks for it; the result records the number of
    trainable parameters. ``alternatives`` (:class:`~inrecon.engine.holdout.Candidate`, labelled against
    ``label``) are other ways to adapt, chosen between by the held-out loss."""
    if ctx.model is None:
        raise InreconError(
            f"{method} needs a pre-trained model", "pass --model MODEL (from inrecon pretrain)"
        )
    split = splitting_applies(scan, meas, cfg.splitting)
    image, info, model = fit_with_holdout(
        meas,
        build,
        cfg,
        run_id={
            "method": method,
            "cfg": config_to_dict(cfg),
            "model": str(ctx.model),
            "supersample": meas.supersample,  # what data.ct_supersample="auto" resolved to
        },
        checkpoint_dir=ctx.checkpoint_dir,
        show_progress=ctx.show_progress,
        desc=method,
        batch_size=batch_size,
        alternatives=alternatives,
        label=label,
    )
    image = after_fit(scan, meas, model, cfg.splitting, cfg.optim.steps, split, info, ctx, image)
    info["n_parameters_trainable"] = sum(p.numel() for g in model.groups for p in g["params"])
    info["data_scale"] = cfg.data.scale  # what data.scale="model" resolved to
    info["supersample"] = meas.supersample  # CT: what data.ct_supersample resolved to (1 for MRI and volumes)
    return ReconResult(image=image, method=method, config=config_to_dict(cfg), info=info)
