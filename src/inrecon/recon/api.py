"""Running methods by name: reconstruct, pre-train and tune through the one registry.

These are what the command line and the public API (:mod:`inrecon`) call. Configs come from the method's
defaults plus overrides (dotted keys such as ``optim.lr``, the short flat keys such as ``lr``, or nested
mappings), checked before any work.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inrecon.config import build_config, config_to_dict
from inrecon.errors import InreconError
from inrecon.recon.methods import METHODS
from inrecon.recon.registry import Context, MethodSpec, ReconResult
from inrecon.runtime import tune_allocator
from inrecon.tuning.run import Tuned, TunerConfig, tune_method

__all__ = ["pretrain", "reconstruct", "resolve", "run_method", "tune"]


def resolve(name: str, scan) -> MethodSpec:
    """The method ``name`` means for ``scan`` (aliases followed), checked to reconstruct its modality."""
    spec = METHODS.resolve(name, scan.modality)
    if scan.modality not in spec.modalities:
        raise InreconError(
            f"method {spec.name!r} reconstructs {'/'.join(spec.modalities)} data, but the scan is {scan.modality}",
            f"choose a method for {scan.modality}: {', '.join(METHODS.for_modality(scan.modality))}",
        )
    return spec


def run_method(
    name: str,
    scan,
    overrides: Mapping[str, Any] | None = None,
    *,
    show_progress: bool | None = None,
    checkpoint_dir: str | Path | None = None,
    model: str | Path | None = None,
) -> ReconResult:
    """Reconstruct ``scan`` with method ``name``: resolve its config from ``overrides``, check the scan's
    modality, the model and optional packages *before* any work, run it, and record the wall time."""
    spec = resolve(name, scan)
    cfg = spec.build(scan.modality, overrides)
    if spec.needs_model and model is None:
        raise InreconError(
            f"method {spec.name!r} needs a pre-trained model", "pass --model MODEL (inrecon pretrain)"
        )
    spec.check_available()
    ctx = Context(show_progress=show_progress, checkpoint_dir=checkpoint_dir, model=model)
    tune_allocator()  # every method, not only the INR engine: NUFFT solvers gain 1.3x (runtime docstring)
    t0 = time.perf_counter()
    result = spec.run(scan, cfg, ctx)
    result.info.setdefault("seconds", time.perf_counter() - t0)
    result.config = config_to_dict(cfg)
    result.method = spec.name
    return result


def reconstruct(
    scan,
    method: str = "ngp",
    *,
    model: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    show_progress: bool | None = None,
    **overrides: Any,
) -> ReconResult:
    """Reconstruct ``scan`` (a scan object or a file path) with ``method``; keyword ``overrides`` set config
    values by their short keys (``steps=500``, ``lr=1e-3``); for dotted keys pass a dict through
    :func:`run_method`.

    >>> import inrecon
    >>> result = inrecon.reconstruct("brain_af6.h5", "cgsense")  # doctest: +SKIP
    """
    if isinstance(scan, str | Path):
        from inrecon.data.io.load import load_scan

        scan = load_scan(scan)
    return run_method(
        method, scan, overrides, show_progress=show_progress, checkpoint_dir=checkpoint_dir, model=model
    )


def pretrain(
    name: str,
    scans: Sequence,
    output: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    names: Sequence[str] | None = None,
    show_progress: bool | None = None,
    checkpoint_dir: str | Path | None = None,
) -> Path:
    """Pre-train population method ``name`` (disinr, strainer, meta) on ``scans`` and write ``output``."""
    spec = METHODS.resolve(name)
    if spec.pretrain is None:
        raise InreconError(
            f"method {name!r} has no pre-training",
            f"pre-train one of: {', '.join(sorted(METHODS.pretrainers()))}",
        )
    cfg = spec.pretrain.build(scans[0].modality if len(scans) else None, overrides)
    return spec.pretrain.run(
        scans, cfg, output, names=names, show_progress=show_progress, checkpoint_dir=checkpoint_dir
    )


def tune(
    scan,
    name: str = "ngp",
    overrides: Mapping[str, Any] | None = None,
    tuner: Mapping[str, Any] | TunerConfig | None = None,
    *,
    model: str | Path | None = None,
    log_path: str | Path | None = None,
    show_progress: bool | None = None,
    ray=None,
) -> Tuned:
    """Tune method ``name`` on ``scan`` by the bilevel search (its registry entry's search space).

    ``overrides`` set the method's base config (for ``ngp`` on top of the bilevel defaults: the self-weighted
    loss); ``tuner`` the search (:class:`~inrecon.tuning.run.TunerConfig`; ``workers`` trials at a time in
    local processes, or as Ray tasks with ``ray``, a :class:`~inrecon.parallel.RayOptions`). Returns
    :class:`~inrecon.tuning.run.Tuned`; ``run_method(name, scan, tuned.hparams)`` is the final reconstruction.
    """
    spec = resolve(name, scan)
    if spec.tunable is None:
        raise InreconError(
            f"method {spec.name!r} declares no hyperparameter space",
            f"tune one of: {', '.join(sorted(METHODS.tunables()))}",
        )
    tuner_cfg = tuner if isinstance(tuner, TunerConfig) else build_config(TunerConfig, tuner)
    if spec.name == "ngp":
        from inrecon.recon.inr.bilevel import tune_ngp

        cfg = METHODS["bilevel"].build(
            scan.modality, {"ngp": dict(overrides or {}), "tuner": config_to_dict(tuner_cfg)}
        )
        return tune_ngp(scan, cfg, log_path=log_path, show_progress=show_progress, ray=ray)
    if spec.needs_model and model is None:
        raise InreconError(f"tuning {spec.name!r} needs its pre-trained model", "pass --model MODEL")
    cfg = spec.build(scan.modality, overrides)
    return tune_method(
        scan,
        spec.name,
        spec.tunable,
        cfg,
        tuner_cfg,
        log_path=log_path,
        show_progress=show_progress,
        model=model,
        ray=ray,
    )
