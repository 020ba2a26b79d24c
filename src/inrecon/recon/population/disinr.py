"""DisINR (METHODS.md section 5): pre-train a shared encoder-decoder pair from raw measurements, then adapt a
fresh subject encoder to a new scan with the shared pair frozen.

Pre-training (Algorithm 1) fits ``psi`` (shared encoder), ``phi`` (shared decoder) and one ``theta_i`` per
subject to every subject's measurements through its own forward operator; no images are used. Adaptation
(Algorithm 2) loads ``psi, phi``, freezes them (``freeze=False`` for the ablation), initialises a new ``theta``
and fits it to the new scan with the same reference-free stopping rule as every other INR method. Because the
shared encoder is frozen and the coordinates are fixed, its features are computed once per adaptation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.holdout import Built, StopConfig, data_identity, fit_with_stopping
from inrecon.engine.trainer import fit
from inrecon.errors import InreconError
from inrecon.models.encodings import FourierFeaturesConfig
from inrecon.models.fields import count_parameters, grid_coords
from inrecon.models.population import DisINRConfig as ArchConfig
from inrecon.models.population import DisINRNetwork
from inrecon.physics.measurement import VolumeProblem, make_problem
from inrecon.recon.population.common import (
    AdaptConfig,
    PopulationPretrainConfig,
    SubjectSet,
    check_compatible,
    load_model,
    pretrain_joint,
    rank_world,
    save_model,
)
from inrecon.recon.registry import ReconResult, register

__all__ = [
    "DisINRAdaptConfig",
    "DisINRPretrainConfig",
    "adapt_network",
    "feature_pca",
    "load_disinr",
    "pretrain_disinr",
    "reconstruct_disinr",
]


@dataclass
class DisINRPretrainConfig(PopulationPretrainConfig):
    """Architecture (paper appendix A.1: encoders of two 128-unit layers, decoder 256 -> 128 -> out) and the
    pre-training schedule (Algorithm 1)."""

    encoder_width: int = 128
    decoder_width: int = 128

    def arch(self) -> ArchConfig:
        return ArchConfig(
            backbone=self.backbone,
            hash=self.hash_config(),
            fourier=FourierFeaturesConfig(n_frequencies=self.fourier_frequencies),
            encoder_width=self.encoder_width,
            decoder_width=self.decoder_width,
            siren_w0=self.siren_w0,
        )


@dataclass
class DisINRAdaptConfig(AdaptConfig):
    """Test-time adaptation (Algorithm 2): Adam lr 1e-3 halved every 1000 steps, up to 4000 steps, stopped by
    the hold-out rule; ``freeze=False`` is the ablation that also trains the shared pair."""

    freeze: bool = True
    wd_enc: float = 0.0
    wd_mlp: float = 0.0
    coord_batch: int = 2**18


def _to_image(out: torch.Tensor, shape, complex_output: bool) -> torch.Tensor:
    if complex_output:
        return torch.view_as_complex(out.float().contiguous()).reshape(shape)
    return out[:, 0].reshape(shape)


def pretrain_disinr(
    scans,
    cfg: DisINRPretrainConfig,
    output: str | Path,
    *,
    names=None,
    show_progress=None,
    checkpoint_dir=None,
    device=None,
) -> Path:
    """Pre-train DisINR on ``scans`` (their raw measurements only) and write the model file ``output``."""
    t0 = time.perf_counter()
    subjects = SubjectSet(scans, maps=cfg.maps, names=names)
    dim = len(subjects.image_shape)
    channels = 2 if subjects.complex_output else 1
    rank, world = rank_world()
    mine = [i for i in range(len(subjects)) if i % world == rank]
    torch.manual_seed(cfg.seed)
    net = DisINRNetwork(dim, channels, list(range(len(subjects))), cfg.arch())
    # every rank builds the same initial weights, then keeps only its own subjects
    for k in list(net.subject_encoders.keys()):
        if int(k) not in mine:
            del net.subject_encoders[k]
    device = device or subjects.problems[0].y.device
    net = net.to(device)
    fp = config_fingerprint(
        {
            "method": "disinr",
            "cfg": asdict(cfg),
            "rank": rank,
            "world": world,
            "data": [data_identity(p) for p in subjects.problems],
        }
    )
    ck = Path(checkpoint_dir) / f"disinr_pretrain.rank{rank}.pt" if checkpoint_dir else None
    hist = pretrain_joint(
        net,
        subjects,
        cfg.schedule(),
        shared_params=net.shared_parameters(),
        subject_ids=mine,
        show_progress=show_progress,
        checkpoint_path=ck,
        fingerprint=fp,
        desc="DisINR pre-train",
    )
    meta = {
        "method": "disinr",
        "architecture": asdict(cfg.arch()),
        "config": asdict(cfg),
        "signature": subjects.signature,
        "trained_on": subjects.names,
        "n_subjects": len(subjects),
        "pretrain_seconds": time.perf_counter() - t0,
        "history": hist,
        "n_parameters_shared": sum(p.numel() for p in net.shared_parameters()),
        "n_parameters_subject_encoder": count_parameters(next(iter(net.subject_encoders.values())))
        if len(net.subject_encoders)
        else None,
        "world_size": world,
    }
    out = Path(output)
    if rank == 0:
        save_model(out, net, meta, prefix_filter=("shared_encoder.", "decoder."))
    return out


def load_disinr(model: str | Path, scan=None, device=None) -> tuple[DisINRNetwork, dict]:
    """The pre-trained shared pair (no subject encoders) and its metadata; checks ``scan`` compatibility first."""
    state, meta = load_model(model)
    if meta.get("method") != "disinr":
        raise InreconError(
            f"{model} is a {meta.get('method')!r} model, not DisINR",
            f"use --method {meta.get('method')} with it, or a DisINR model",
        )
    if scan is not None:
        check_compatible(meta, scan, str(model))
    arch = ArchConfig.from_dict(meta["architecture"])
    sig = meta["signature"]
    net = DisINRNetwork(len(sig["image_shape"]), sig["channels"], [], arch)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("subject_encoders.") for k in missing):
        raise InreconError(
            f"{model} does not match the DisINR architecture in its own header",
            "re-create it with inrecon pretrain",
        )
    return net.to(device) if device is not None else net, meta


def adapt_network(net: DisINRNetwork, problem, cfg: DisINRAdaptConfig):
    """A ``build()`` for :func:`fit_with_stopping`: a copy of ``net`` with a fresh, seeded subject encoder."""
    device = problem.y.device
    coords = grid_coords(problem.image_shape, device=device)
    base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def build() -> Built:
        torch.manual_seed(cfg.seed)
        model = DisINRNetwork(net.dim, net.out_channels, [], net.cfg).to(device)
        model.load_state_dict(base_state, strict=False)
        sid = model.add_subject()
        plan = model.plan(coords)
        if cfg.freeze:
            for p in model.shared_parameters():
                p.requires_grad_(False)
            with torch.no_grad():
                h_shared = model.shared_features(plan)
        enc = model.subject_encoders[str(sid)]

        def forward():
            hs = h_shared if cfg.freeze else model.shared_features(plan)
            out = model.decoder(torch.cat([hs, model.subject_features(plan, sid)], dim=1))
            image = _to_image(out, problem.image_shape, problem.complex_output)
            return image, problem.predict(image)

        if cfg.freeze:
            groups = [{"params": list(enc.parameters()), "weight_decay": cfg.wd_enc}]
        else:
            groups = [
                {"params": list(enc.parameters()), "weight_decay": cfg.wd_enc},
                {"params": model.shared_parameters(), "weight_decay": cfg.wd_mlp},
            ]
        return Built(model, forward, groups)

    return build


def reconstruct_disinr(scan, cfg: DisINRAdaptConfig, *, model, show_progress=None, checkpoint_dir=None):
    """Adapt a pre-trained DisINR to ``scan`` (model compatibility is checked before any work)."""
    net, meta = load_disinr(model, scan, device=_scan_device(scan))
    problem = make_problem(scan, cfg.maps)
    if isinstance(problem, VolumeProblem) and problem.y.numel() > cfg.coord_batch:
        return _adapt_volume(
            net, problem, cfg, meta, show_progress=show_progress, checkpoint_dir=checkpoint_dir
        )
    build = adapt_network(net, problem, cfg)
    stop = cfg.stop_config()
    if isinstance(problem, VolumeProblem):
        stop = StopConfig("none", seed=cfg.seed)
    image, info, built = fit_with_stopping(
        problem,
        build,
        cfg.optim(),
        stop,
        run_id={"method": "disinr", "cfg": asdict(cfg), "model": str(model)},
        checkpoint_dir=checkpoint_dir,
        show_progress=show_progress,
        desc="DisINR",
    )
    info["n_parameters_trainable"] = sum(p.numel() for g in built.groups for p in g["params"])
    info["pretrained_on"] = meta.get("trained_on")
    return ReconResult(image=image, method="disinr", config=asdict(cfg), info=info)


def _scan_device(scan):
    data = getattr(scan, "kspace", None)
    if data is None:
        data = getattr(scan, "sinogram", None)
    if data is None:
        data = scan.volume
    return data.device


def _adapt_volume(
    net, problem: VolumeProblem, cfg: DisINRAdaptConfig, meta, *, show_progress, checkpoint_dir
):
    """Volume fitting in coordinate batches: ``steps`` steps, no hold-out (identity measurement, no noise)."""
    device = problem.y.device
    torch.manual_seed(cfg.seed)
    model = DisINRNetwork(net.dim, net.out_channels, [], net.cfg).to(device)
    model.load_state_dict(net.state_dict(), strict=False)
    sid = model.add_subject()
    if cfg.freeze:
        for p in model.shared_parameters():
            p.requires_grad_(False)
    coords = grid_coords(problem.image_shape, device=device)
    n = coords.shape[0]
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(n, generator=g).to(device)
    state = {"k": 0}

    def forward():
        b = cfg.coord_batch
        start = (state["k"] * b) % n
        state["k"] += 1
        idx = perm[start : start + b]
        if idx.numel() < b:
            idx = torch.cat([idx, perm[: b - idx.numel()]])
        return None, model(coords[idx], sid)[:, 0], problem.y[idx]

    @torch.no_grad()
    def render():
        outs = [model(coords[i : i + cfg.coord_batch], sid)[:, 0] for i in range(0, n, cfg.coord_batch)]
        return torch.cat(outs).reshape(problem.image_shape)

    from inrecon.metrics import evaluate

    def ev(img):
        m = evaluate(problem.finalize(img), problem.target)
        return {"psnr": m["psnr"], "ssim": m["ssim"]}

    params = [p for p in model.parameters() if p.requires_grad]
    fp = config_fingerprint({"method": "disinr-volume", "cfg": asdict(cfg), "data": data_identity(problem)})
    res = fit(
        forward,
        model,
        [{"params": params}],
        problem.y,
        cfg.optim(),
        evaluate=ev,
        render=render,
        show_progress=show_progress,
        desc="DisINR volume",
        checkpoint_path=Path(checkpoint_dir) / "fit.pt" if checkpoint_dir else None,
        fingerprint=fp,
        on_resume=lambda step: state.__setitem__("k", step),
    )
    info = {
        "history": res.history,
        "steps_run": res.steps_run,
        "fit_seconds": res.seconds,
        "n_parameters_trainable": sum(p.numel() for p in params),
        "pretrained_on": meta.get("trained_on"),
    }
    return ReconResult(image=problem.finalize(res.image), method="disinr", config=asdict(cfg), info=info)


@torch.no_grad()
def feature_pca(
    net: DisINRNetwork, subject: int, image_shape, n_components: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the shared and the subject features on the grid, as images (paper Fig. 5).

    Returns two arrays ``(*image_shape, n_components)`` scaled to [0, 1] per component.
    """
    device = next(net.parameters()).device
    coords = grid_coords(tuple(image_shape), device=device)
    plan = net.plan(coords)

    def pca(feats: torch.Tensor) -> np.ndarray:
        f = feats.double() - feats.double().mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(f, full_matrices=False)
        comp = (f @ v[:n_components].T).cpu().numpy()
        lo, hi = np.percentile(comp, 1, axis=0), np.percentile(comp, 99, axis=0)
        comp = np.clip((comp - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
        return comp.reshape(*image_shape, n_components)

    return pca(net.shared_features(plan)), pca(net.subject_features(plan, subject))


@register(
    "disinr",
    DisINRAdaptConfig,
    ("mri", "ct", "volume"),
    "DisINR: adapt a subject encoder with the pre-trained shared encoder-decoder frozen (needs --model)",
    needs_model=True,
)
def _disinr(
    scan, cfg: DisINRAdaptConfig, *, show_progress=None, model=None, checkpoint_dir=None
) -> ReconResult:
    if model is None:
        raise InreconError("DisINR needs a pre-trained model", "pass --model MODEL (from inrecon pretrain)")
    return reconstruct_disinr(
        scan, cfg, model=model, show_progress=show_progress, checkpoint_dir=checkpoint_dir
    )
