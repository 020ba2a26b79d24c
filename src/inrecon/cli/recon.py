"""``inrecon recon``, ``recon-series`` and ``methods``: reconstruct a scan with any registered method."""

from __future__ import annotations

import json
import math
from pathlib import Path

from inrecon import __version__
from inrecon.cli.common import (
    LOG,
    add_common,
    add_config,
    check_device,
    check_memory_for,
    check_outputs,
    command,
    json_default,
    load_config_file,
    parse_sets,
    print_json,
    progress_choice,
    set_help,
)
from inrecon.errors import InreconError

__all__ = ["add_parsers"]

_OUTPUT_SUFFIXES = (".h5", ".hdf5", ".nii", ".gz", ".npy", ".png", ".cfl", ".dcm", "")


def _check_output_suffix(out: Path) -> None:
    if out.suffix not in _OUTPUT_SUFFIXES:
        raise InreconError(
            f"output {str(out)!r} has an unsupported extension {out.suffix!r}",
            "use .h5, .nii, .nii.gz, .npy, .png, .cfl, .dcm, or a folder (DICOM series)",
        )


def _sidecar(out: Path) -> Path:
    """``OUT.json`` beside a file output; ``OUT/recon.json`` inside a folder (DICOM series) output."""
    return out.with_name(out.name + ".json") if out.suffix else out / "recon.json"


def _write_sidecar(out: Path, result, summary: dict) -> None:
    from inrecon.data.atomic import atomic_path

    side = _sidecar(out)
    payload = {"summary": summary, "config": result.config, "info": result.info, "version": __version__}
    with atomic_path(side, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=json_default))


def _overrides(args) -> tuple[dict, dict | None]:
    """Config values: --config file, then tuned --hparams, then --set (later wins)."""
    overrides = load_config_file(args.config)
    record = None
    if args.hparams:
        from inrecon.tuning.hparams import load_hparams

        record = load_hparams(args.hparams)
        overrides.update(record["hparams"])
    overrides.update(parse_sets(args.set))
    return overrides, record


def _summary(scan, image, result, out: Path) -> dict:
    summary = {"output": str(out), "method": result.method, "seconds": result.info.get("seconds")}
    if scan.modality == "mri-series":  # scored frame by frame by the method itself
        keys = ("mode", "seconds_first", "seconds_per_frame", "psnr_mean", "ssim_mean")
        return {**summary, **{k: result.info[k] for k in keys if k in result.info}}
    if scan.target is not None:
        from inrecon.metrics import evaluate

        summary["metrics"] = evaluate(
            image,
            scan.target.cpu(),
            roi=None if scan.roi is None else scan.roi.cpu(),
            scale=scan.modality == "mri",
        )
    return summary


def _check_recon_args(args, out: Path):
    """What ``recon`` can check before reading the scan: the device, every output against every input, the
    HU window, the memory to read the input. Returns the device."""
    from inrecon.cli.scans import check_file_memory

    if not args.output.strip():
        raise InreconError("the output path is empty", "give an output file name with -o")
    device = check_device(args.device)
    inputs = [args.input, args.model, args.hparams, args.config]
    if out.suffix:
        check_outputs([out, _sidecar(out)], inputs=inputs, checkpoint_dir=args.checkpoint_dir)
    else:
        check_outputs(folders=[out], inputs=inputs, checkpoint_dir=args.checkpoint_dir)
    if args.hu_window is not None:
        lo, hi = args.hu_window
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InreconError(
                f"--hu-window {lo:g} {hi:g} is not an interval LO < HI",
                f"give the lower bound first, e.g. --hu-window {min(lo, hi):g} {max(lo, hi):g}",
            )
    check_file_memory(args, args.input)
    return device


def _check_recon_scan(args, scan, overrides: dict, record: dict | None) -> None:
    """What ``recon`` checks once the scan is read: the config (also for its sizes) and the memory the method
    will need; warns when tuned hyperparameters come from another protocol."""
    from inrecon.config import build_config, config_to_dict
    from inrecon.recon.api import resolve
    from inrecon.resources import estimate_scan

    cfg = build_config(resolve(args.method, scan).config, overrides)
    est, what = estimate_scan(scan, config_to_dict(cfg))
    check_memory_for(args, est, f"{args.method} on {what}")
    if record is not None:
        from inrecon.tuning.hparams import protocol_mismatches

        for msg in protocol_mismatches(record, scan):
            LOG.warning("hyperparameters were tuned on another protocol (%s)", msg)


def cmd_recon(args) -> int:
    """Reconstruct a scan.

    One method, one scan; the image is written in the format of the output's extension (.h5, .nii/.nii.gz, .npy,
    .png, .dcm or a folder for a DICOM series). The resolved config and run information are written beside it
    as OUTPUT.json; metrics are printed when the scan has a target. `inrecon methods` lists the methods,
    `inrecon methods NAME` their config keys and defaults.
    """
    from inrecon.cli.housekeeping import CheckpointFolder, clean_stale_temporaries
    from inrecon.data.io.images import write_image
    from inrecon.data.io.load import load_scan, scan_options
    from inrecon.data.io.outputs import check_output, output_options
    from inrecon.recon.api import run_method
    from inrecon.recon.methods import METHODS

    METHODS.resolve(args.method)  # an unknown method fails here, before reading anything
    overrides, record = _overrides(args)
    out = Path(args.output)
    device = _check_recon_args(args, out)
    _check_output_suffix(out)
    scan = load_scan(args.input, **scan_options(args))
    check_output(out, scan)  # before the reconstruction: DICOM targets, slices into one .dcm
    scan = scan.to(device)
    _check_recon_scan(args, scan, overrides, record)
    ckpt = CheckpointFolder(args.checkpoint_dir, keep=args.keep_checkpoints)
    clean_stale_temporaries(out if not out.suffix and out.is_dir() else out.parent)
    result = run_method(
        args.method,
        scan,
        overrides,
        show_progress=progress_choice(args),
        checkpoint_dir=args.checkpoint_dir,
        model=args.model,
    )
    image = result.image.detach().cpu()
    kwargs, notes = output_options(out, scan, result.method, hu_window=args.hu_window)
    for note in notes:  # what the file cannot say (unknown spacing, values not in HU); quiet with -q
        LOG.info("note: %s", note)
    write_image(out, image, meta={"method": result.method, "config": result.config}, **kwargs)
    summary = _summary(scan, image, result, out)
    summary.update(ckpt.finish())
    _write_sidecar(out, result, summary)
    LOG.info("wrote %s", out)
    print_json(summary)
    return 0


_SERIES_SUFFIXES = (".h5", ".hdf5", ".npy", ".nii", ".gz")


def cmd_recon_series(args) -> int:
    """Reconstruct a real-time MRI series by residual learning.

    The `series` method with its frame options as flags: fit frame 0 of a series file (inrecon HDF5, modality
    'mri-series') with the scan-specific INR, then fine-tune the previous frame's weights on each later frame.
    Writes the (T, H, W) complex stack to OUTPUT and per-frame times and metrics to OUTPUT.json.
    """
    if Path(args.output).suffix not in _SERIES_SUFFIXES:
        raise InreconError(
            f"output {args.output!r} has an unsupported extension for a (frames, H, W) stack",
            "use .h5, .npy, .nii or .nii.gz",
        )
    sets = list(args.set or [])
    if args.steps_first is not None:
        sets += [f"ngp.optim.steps={args.steps_first}", "ngp.stop.rule=none"]
    if args.steps_frame is not None:
        sets.append(f"steps_frame={args.steps_frame}")
    if args.mode is not None:
        sets.append(f"mode={args.mode}")
    args.set, args.method = sets, "series"
    if args.hparams:  # tuned ngp settings apply to the series' ngp section
        from inrecon.tuning.hparams import load_hparams

        rec = load_hparams(args.hparams)
        args.set = [f"ngp.{k}={v}" for k, v in rec["hparams"].items()] + sets
        args.hparams = None
    for k in ("config", "model", "checkpoint_dir", "slice", "hu_window"):
        setattr(args, k, None)
    args.keep_checkpoints = False
    return cmd_recon(args)


def cmd_methods(args) -> int:
    """List the methods, or one method's config keys and defaults.

    Without NAME: every method with its modalities and what else it can do (pretrain, tune, model). With NAME:
    every config key (dotted; the short aliases it also accepts), its type, default and meaning.
    """
    from inrecon.config import describe_config
    from inrecon.recon.methods import METHODS

    if not args.name:
        for name, spec in METHODS.items():
            extras = [
                x
                for x, on in (
                    ("pretrain", spec.pretrain),
                    ("tune", spec.tunable),
                    ("model", spec.needs_model),
                )
                if on
            ]
            tag = f" [{', '.join(extras)}]" if extras else ""
            print(f"{name:10s} {'/'.join(spec.modalities):16s} {spec.summary}{tag}")
        return 0
    spec = METHODS.resolve(args.name)
    rows = describe_config(spec.config)
    if args.json:
        print_json(
            {"method": spec.name, "modalities": spec.modalities, "summary": spec.summary, "keys": rows}
        )
        return 0
    print(f"{spec.name}: {spec.summary}\nmodalities: {', '.join(spec.modalities)}\n")
    for r in rows:
        alias = f" (also: {', '.join(r['aliases'])})" if r["aliases"] else ""
        print(f"  {r['key']} = {r['default']!r}    [{r['type']}]{alias}\n      {r['doc']}")
    if spec.pretrain is not None:
        print(
            f"\npre-training ({spec.pretrain.summary}): `inrecon methods {spec.name} --pretrain` lists its keys"
        )
        if args.pretrain:
            for r in describe_config(spec.pretrain.config):
                print(f"  {r['key']} = {r['default']!r}    [{r['type']}]\n      {r['doc']}")
    return 0


def _method_list() -> str:
    from inrecon.recon.methods import METHODS

    return ", ".join(METHODS.names())


def add_parsers(sub) -> None:
    from inrecon.data.io.load import add_input_options

    s = command(sub, cmd_recon)
    s.add_argument("input", help="scan file")
    s.add_argument("-o", "--output", required=True, help="output image file")
    s.add_argument("--method", required=True, help=f"one of: {_method_list()}")
    add_config(s)
    s.add_argument("--hparams", help="JSON of tuned hyperparameters (from `inrecon tune`)")
    s.add_argument("--model", help="pre-trained model file (disinr, strainer, meta)")
    s.add_argument("--slice", type=int, help="slice index for multi-slice inputs")
    add_input_options(s)
    s.add_argument("--checkpoint-dir", help="write checkpoints here and resume from them (iterative methods)")
    s.add_argument(
        "--keep-checkpoints", action="store_true", help="keep the checkpoint files after a successful run"
    )
    s.add_argument(
        "--hu-window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="CT: HU window the [0,1] image maps to (DICOM in HU; the PNG shows this window)",
    )
    add_common(s)

    s = command(sub, cmd_recon_series)
    s.add_argument("input", help="series file (.h5)")
    s.add_argument("-o", "--output", required=True, help="output stack (.h5, .npy, .nii, .nii.gz)")
    s.add_argument("--steps-first", type=int, help="fit frame 0 for exactly this many steps [hold-out rule]")
    s.add_argument("--steps-frame", type=int, help="fine-tuning steps per later frame [config: steps_frame]")
    s.add_argument(
        "--mode", choices=["residual", "scratch"], help="fine-tune from the previous frame, or fit anew"
    )
    s.add_argument("--hparams", help="tuned ngp settings from `inrecon tune` (applied before --set)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help("the series config"))
    add_common(s)

    s = command(sub, cmd_methods)
    s.add_argument("name", nargs="?", help="a method name")
    s.add_argument("--pretrain", action="store_true", help="also list the pre-training config keys")
    s.add_argument("--json", action="store_true", help="machine-readable output")
