"""The ``tune`` and ``recon-series`` subcommands (hooked into :mod:`inrecon.cli` by :func:`add_parsers`).

``inrecon tune INPUT -o H.json``
    Bilevel hyperparameter tuning of the scan-specific INR on one scan (:mod:`inrecon.recon.inr.bilevel`); writes
    the tuned ``ngp`` settings, reusable with ``inrecon recon --method ngp --hparams H.json``. Every finished trial
    is appended to a log (default ``H.trials.jsonl`` beside the output); running the same command again resumes
    from it.
``inrecon recon-series INPUT -o OUT``
    Residual-learning reconstruction of a real-time series file (:mod:`inrecon.recon.series`).

Both return 0 and raise :class:`~inrecon.errors.InreconError` on bad input before any long computation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from inrecon.errors import InreconError

__all__ = ["add_parsers", "cmd_recon_series", "cmd_tune"]

_SERIES_SUFFIXES = (".h5", ".hdf5", ".npy", ".nii", ".gz")


def _sets(items: list[str] | None) -> dict:
    from inrecon.cli import _parse_sets

    return _parse_sets(items)


def _json_default(o):
    from inrecon.cli import _json_default as jd

    return jd(o)


def _load(args):
    from inrecon.data.io.load import load_scan
    from inrecon.runtime import resolve_device

    scan = load_scan(
        args.input, **({"slice": args.slice} if getattr(args, "slice", None) is not None else {})
    )
    return scan.to(resolve_device(args.device))


# --- tune -----------------------------------------------------------------------------------------------------
def default_log_path(output: str | Path) -> Path:
    """``H.json`` -> ``H.trials.jsonl`` beside it."""
    out = Path(output)
    return out.with_name(f"{out.stem}.trials.jsonl")


def cmd_tune(args) -> int:
    from inrecon.recon.inr.bilevel import BilevelConfig, save_hparams, scan_protocol, tune_bilevel
    from inrecon.recon.registry import config_from_dict

    out = Path(args.output)
    if out.suffix != ".json":
        raise InreconError(
            f"output {str(out)!r} is not a .json file", "write the hyperparameters to e.g. H.json"
        )
    overrides = _sets(args.set)
    for flag, key in (
        ("random", "n_random"),
        ("guided", "n_guided"),
        ("steps", "steps"),
        ("patience", "patience"),
        ("seed", "seed"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.oracle:
        overrides["oracle"] = True
    cfg = config_from_dict(BilevelConfig, overrides)
    cfg.validate()
    log = Path(args.log) if args.log else default_log_path(out)
    scan = _load(args)
    if scan.modality not in ("mri", "ct"):
        raise InreconError(f"cannot tune on {scan.modality} data", "give an MRI or CT scan file")
    if cfg.oracle and scan.target is None:
        raise InreconError(
            f"--oracle scores against the reference, but {args.input} holds no 'target'",
            "use a scan file with a target (e.g. from `inrecon simulate`), or drop --oracle",
        )
    tuned = tune_bilevel(scan, cfg, log_path=log, show_progress=not args.quiet)
    save_hparams(out, tuned, scan_protocol(scan))
    summary = {
        "output": str(out),
        "log": str(log),
        "score": tuned.score,
        "oracle": tuned.oracle,
        "trials": len(tuned.result.trials),
        "failed": tuned.result.n_failed,
        "seconds": tuned.result.seconds,
        "hparams": tuned.hparams,
    }
    if not args.quiet:
        print(json.dumps(summary, indent=2, default=_json_default))
    return 0


# --- recon-series ---------------------------------------------------------------------------------------------
def cmd_recon_series(args) -> int:
    from inrecon.data.atomic import atomic_path
    from inrecon.data.io.images import write_image
    from inrecon.recon.inr.bilevel import load_hparams
    from inrecon.recon.registry import config_from_dict
    from inrecon.recon.series import SeriesConfig, read_series, reconstruct_series

    out = Path(args.output)
    if out.suffix not in _SERIES_SUFFIXES:
        raise InreconError(
            f"output {str(out)!r} has an unsupported extension {out.suffix!r}",
            "use .h5, .npy, .nii or .nii.gz (a (frames, H, W) stack)",
        )
    overrides: dict = {}
    if args.hparams:
        overrides.update(load_hparams(args.hparams)["hparams"])
    overrides.update(_sets(args.set))
    if args.steps_first is not None:
        overrides.update(steps=args.steps_first, stop="none")
    if args.steps_frame is not None:
        overrides["steps_frame"] = args.steps_frame
    if args.mode is not None:
        overrides["mode"] = args.mode
    cfg = config_from_dict(SeriesConfig, overrides)
    cfg.validate()
    from inrecon.runtime import resolve_device

    device = resolve_device(args.device)
    frames = [f.to(device) for f in read_series(args.input)]
    images, info = reconstruct_series(frames, cfg, show_progress=not args.quiet)
    meta = {"method": "series", "mode": cfg.mode}
    write_image(out, images.detach().cpu(), meta=meta)
    side = out.with_name(out.name + ".json")
    payload = {"config": dataclasses.asdict(cfg), "info": info}
    with atomic_path(side, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    if not args.quiet:
        keys = ("mode", "seconds", "seconds_first", "seconds_per_frame", "psnr_mean", "ssim_mean")
        print(json.dumps({"output": str(out), **{k: info[k] for k in keys if k in info}}, indent=2))
    return 0


# --- parsers --------------------------------------------------------------------------------------------------
def add_parsers(subparsers) -> None:
    """Add ``tune`` and ``recon-series`` to the ``inrecon`` subparsers."""
    s = subparsers.add_parser(
        "tune",
        help="tune the scan-specific INR's hyperparameters on one scan (bilevel, no reference needed)",
        description="Bilevel optimisation (Bilevel-INR paper): split the acquired samples 80/20 at random; for "
        "each candidate h = (lr, wd_enc, wd_mlp, delta, per_level_scale) train the INR on the 80 % with the "
        "self-weighted loss and score the held-out 20 % (early stopping picks the step); choose h by Bayesian "
        "optimisation (Gaussian process, UCB; --random Sobol points then --guided ones). Writes the tuned "
        "`ngp` settings (with the chosen step count) to OUTPUT; reuse them with `inrecon recon --method ngp "
        "--hparams OUTPUT`. Every finished trial is appended to a log (--log, default OUTPUT's name with "
        ".trials.jsonl); re-running the same command resumes from it, so an interrupted run loses no trial.",
    )
    s.add_argument("input", help="scan file (MRI or CT)")
    s.add_argument("-o", "--output", required=True, help="hyperparameter file to write (.json)")
    s.add_argument("--random", type=int, default=None, help="random (Sobol) initial trials [20]")
    s.add_argument("--guided", type=int, default=None, help="Bayesian-optimisation trials [40]")
    s.add_argument("--steps", type=int, default=None, help="step limit of one trial [2000]")
    s.add_argument(
        "--patience", type=int, default=None, help="stop a trial this many steps after its best [300]"
    )
    s.add_argument("--seed", type=int, default=None, help="seed: split, INR initialisation, proposals [0]")
    s.add_argument(
        "--oracle",
        action="store_true",
        help="score trials by PSNR against the scan's reference (evaluation only)",
    )
    s.add_argument("--log", help="trial log (JSON lines) to append to and resume from")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="other bilevel/ngp settings, e.g. mlp_layers=2, kappa=2.576, holdout_fraction=0.2",
    )
    s.add_argument("--slice", type=int, help="slice index for multi-slice inputs")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    s.add_argument("-q", "--quiet", action="store_true", help="no trial table, no summary")
    s.set_defaults(func=cmd_tune)

    s = subparsers.add_parser(
        "recon-series",
        help="reconstruct a real-time MRI series by residual learning",
        description="Fit frame 0 of a series file (inrecon HDF5, modality 'mri-series': kspace (T, C, H, W), "
        "mask (T, H, W), optional sens_maps, target) with the scan-specific INR, then fine-tune the previous "
        "frame's weights on each later frame for --steps-frame steps. Writes the (T, H, W) complex stack to "
        "OUTPUT and per-frame times and metrics to OUTPUT.json.",
    )
    s.add_argument("input", help="series file (.h5)")
    s.add_argument("-o", "--output", required=True, help="output stack (.h5, .npy, .nii, .nii.gz)")
    s.add_argument(
        "--steps-first",
        type=int,
        default=None,
        help="fit frame 0 for exactly this many steps [default: the tuned steps with --hparams, else the "
        "hold-out rule]",
    )
    s.add_argument("--steps-frame", type=int, default=None, help="fine-tuning steps per later frame [500]")
    s.add_argument(
        "--mode",
        choices=["residual", "scratch"],
        default=None,
        help="residual (fine-tune from the previous frame) or scratch (fit each frame anew) [residual]",
    )
    s.add_argument("--hparams", help="tuned settings from `inrecon tune` (applied before --set)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    s.set_defaults(func=cmd_recon_series)
