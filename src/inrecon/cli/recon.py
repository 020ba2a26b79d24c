"""``inrecon recon``, ``recon-series`` and ``methods``: reconstruct a scan with any registered method."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
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
    # what the hold-out rule chose without a reference: the step count, a prior weight, the backbone
    names = {
        "chosen_steps": "steps",
        "prior_tv": "prior.tv",
        "prior_phase": "prior.phase",
        "candidate": "candidate",
    }
    chosen = {names[k]: result.info[k] for k in names if result.info.get(k) is not None}
    if chosen:
        summary["chosen"] = chosen
    if result.info.get("phase_roughness") is not None:  # why prior.phase=auto chose as it did
        summary["phase_roughness"] = result.info["phase_roughness"]
    # CT: the image grid the INR modelled (what data.ct_supersample="auto" resolved to)
    if scan.modality == "ct" and result.info.get("supersample") is not None:
        summary["ct_supersample"] = result.info["supersample"]
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
    from inrecon.config import config_to_dict
    from inrecon.recon.api import resolve
    from inrecon.resources import estimate_scan

    cfg = resolve(args.method, scan).build(scan.modality, overrides)
    est, what = estimate_scan(scan, config_to_dict(cfg))
    check_memory_for(args, est, f"{args.method} on {what}")
    if record is not None:
        from inrecon.tuning.hparams import protocol_mismatches

        for msg in protocol_mismatches(record, scan):
            LOG.warning("hyperparameters were tuned on another protocol (%s)", msg)


def _recon_one(args, *, clean: bool = True) -> dict:
    """One scan ``args.input`` into ``args.output``: checks, reconstruction, image and sidecar; the summary."""
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
    if clean:
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
    return summary


def cmd_recon(args) -> int:
    """Reconstruct one scan, or many.

    One method, one scan; the image is written in the format of the output's extension (.h5, .nii/.nii.gz, .npy,
    .png, .dcm or a folder for a DICOM series). The resolved config and run information are written beside it
    as OUTPUT.json; metrics are printed when the scan has a target. `inrecon methods` lists the methods,
    `inrecon methods NAME` their config keys and defaults. Many scans (`inrecon recon --method ngp scans/*.h5
    -o out/`): -o is a folder and each output is named after its input, OUT/STEM.h5 (--format for another
    format); --jobs N runs N at once in local processes, --ray (or RAY_ADDRESS set) as tasks on a Ray cluster.
    An input whose output is already complete is skipped, so re-running the command after a failure redoes
    only what is missing; a failed input does not stop the others, and the exit status is 1 when any failed.
    """
    inputs = args.input if isinstance(args.input, list) else [args.input]
    if len(inputs) > 1 or getattr(args, "format", None):
        return _recon_many(args, inputs)
    args.input = inputs[0]
    print_json(_recon_one(args))
    return 0


# --- many inputs ----------------------------------------------------------------------------------------------
_FORMATS = {"h5": ".h5", "nii": ".nii", "nii.gz": ".nii.gz", "npy": ".npy", "png": ".png", "cfl": ".cfl"}
_FORMATS.update({"dcm": ".dcm", "dicom": ""})
_INPUT_SUFFIXES = (".nii.gz", ".h5", ".hdf5", ".mrd", ".nii", ".npy", ".npz", ".mat", ".dcm", ".cfl", ".hdr")


def _stem(path: str) -> str:
    """An input's name without its file-format suffix (``a.nii.gz`` -> ``a``; a folder keeps its name)."""
    name = Path(path.rstrip("/\\")).name
    for suffix in _INPUT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _complete(out: Path) -> dict | None:
    """The sidecar of a finished output (written last, atomically, after the image), or None."""
    side = _sidecar(out)
    if not (out.exists() and side.is_file()):
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("summary"), dict) else None


def _plan_many(args, inputs: list[str]) -> list[dict]:
    """Every check that needs no scan, for every input, before any work: the output folder, one output per
    input (no two alike, none an input), each output's and sidecar's path, each input present, the memory to
    read it. A complete output (:func:`_complete`) is kept in the plan's ``done`` (skipped); one written by
    another method is an error."""
    from inrecon.recon.methods import METHODS

    spec = METHODS.resolve(args.method)
    if not (args.output or "").strip():
        raise InreconError("the output folder is empty", "give an output folder with -o")
    folder = Path(args.output)
    check_outputs(folders=[folder], inputs=[*inputs, args.model, args.hparams, args.config])
    suffix = _FORMATS[args.format or "h5"]
    plan, seen = [], {}
    for inp in inputs:
        if not Path(inp).exists():
            raise InreconError(
                f"input {inp!r} does not exist", "check the path (every input is checked first)"
            )
        out = folder / (_stem(inp) + suffix)
        if str(out) in seen:
            raise InreconError(
                f"inputs {seen[str(out)]!r} and {inp!r} would both be written to {str(out)!r}",
                "give inputs with different names, or run them with different -o folders",
            )
        seen[str(out)] = inp
        one = argparse.Namespace(**{**vars(args), "input": inp, "output": str(out)})
        if args.checkpoint_dir:
            one.checkpoint_dir = str(Path(args.checkpoint_dir) / _stem(inp))
        _check_recon_args(one, out)
        if suffix:  # and not any other input either
            check_outputs([out, _sidecar(out)], inputs=inputs)
        else:
            check_outputs(folders=[out], inputs=inputs)
        _check_output_suffix(out)
        done = _complete(out)
        if done is not None and done["summary"].get("method") not in (spec.name, args.method):
            raise InreconError(
                f"{str(out)!r} holds a {done['summary'].get('method')} reconstruction, not {spec.name}",
                "write to another -o folder, or delete that output",
            )
        plan.append({"args": one, "input": inp, "output": str(out), "done": done})
    return plan


def _recon_task(context, args_dict: dict) -> dict:
    """What a worker runs for one input (module-level, so that it pickles)."""
    return _recon_one(argparse.Namespace(**args_dict), clean=False)


def _runner(args, n: int):
    from inrecon.parallel import RayOptions, Runner, import_ray, ray_requested

    if args.jobs < 1:
        raise InreconError(f"--jobs {args.jobs}", "give --jobs 1 or more")
    level = LOG.getEffectiveLevel()
    worker_level = level if level < logging.INFO else logging.WARNING
    if ray_requested(args.ray):
        import_ray()  # a missing Ray fails here, before any work
        opts = RayOptions(args.ray_cpus_per_task, args.ray_gpus_per_task)
        return Runner(args.jobs, ray=opts, log_level=worker_level)
    return Runner(min(args.jobs, max(n, 1)), log_level=worker_level)


def _recon_many(args, inputs: list[str]) -> int:
    """``recon`` with many inputs (cmd_recon's docstring): plan and check all, run the missing ones."""
    import time

    from inrecon.cli.housekeeping import clean_stale_temporaries

    t0 = time.perf_counter()
    _overrides(args)  # --config, --hparams and --set are read (and fail) once, before any work
    plan = _plan_many(args, inputs)
    todo = [p for p in plan if p["done"] is None]
    for p in plan:
        if p["done"] is not None:
            LOG.info("note: %s is complete, skipped (delete it to redo it)", p["output"])
    runner = _runner(args, len(todo))
    clean_stale_temporaries(Path(args.output))
    if todo:
        LOG.info(
            "%d of %d inputs to reconstruct (%s, %d at once)",
            len(todo),
            len(plan),
            runner.backend,
            runner.jobs,
        )
    results = {p["input"]: {"input": p["input"], "output": p["output"], "status": "skipped"} for p in plan}
    for p in plan:
        if p["done"] is not None:
            results[p["input"]]["summary"] = p["done"]["summary"]
    items = []
    for p in todo:
        d = dict(vars(p["args"]))
        d.pop("func", None)
        if runner.backend != "serial":
            d["quiet"] = True  # no progress bars from N workers on one terminal
        items.append(d)
    with runner:
        for k, outcome in runner.run(_recon_task, items):
            p = todo[k]
            if outcome.ok:
                results[p["input"]].update(status="done", summary=outcome.value)
                LOG.info("done %s -> %s", p["input"], p["output"])
            else:
                results[p["input"]].update(status="failed", error=outcome.error)
    failed = [r for r in results.values() if r["status"] == "failed"]
    for r in failed:
        print(f"inrecon: error: {r['input']} failed: {r['error']}", file=sys.stderr)
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("done", "skipped", "failed")}
    print_json(
        {
            "inputs": len(plan),
            **counts,
            "backend": runner.backend,
            "jobs": runner.jobs,
            "seconds": round(time.perf_counter() - t0, 3),
            "results": [results[p["input"]] for p in plan],
        }
    )
    if failed:
        LOG.warning(
            "%d of %d inputs failed; re-running the same command redoes only those", len(failed), len(plan)
        )
    return 1 if failed else 0


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
            {
                "method": spec.name,
                "modalities": spec.modalities,
                "summary": spec.summary,
                "keys": rows,
                "modality_defaults": {m: dict(d) for m, d in spec.modality_defaults.items()},
            }
        )
        return 0
    print(f"{spec.name}: {spec.summary}\nmodalities: {', '.join(spec.modalities)}\n")
    for r in rows:
        alias = f" (also: {', '.join(r['aliases'])})" if r["aliases"] else ""
        print(f"  {r['key']} = {r['default']!r}    [{r['type']}]{alias}\n      {r['doc']}")
    for modality, values in spec.modality_defaults.items():
        listed = ", ".join(f"{k}={v!r}" for k, v in values.items())
        print(f"\non {modality} scans the defaults differ (your --set values still win): {listed}")
    if spec.pretrain is not None:
        print(
            f"\npre-training ({spec.pretrain.summary}): `inrecon methods {spec.name} --pretrain` lists its keys"
        )
        if args.pretrain:
            for r in describe_config(spec.pretrain.config):
                print(f"  {r['key']} = {r['default']!r}    [{r['type']}]\n      {r['doc']}")
            for modality, values in spec.pretrain.modality_defaults.items():
                listed = ", ".join(f"{k}={v!r}" for k, v in values.items())
                print(f"\npre-training on {modality} scans, the defaults differ (--set still wins): {listed}")
    return 0


def _method_list() -> str:
    from inrecon.recon.methods import METHODS

    return ", ".join(METHODS.names())


def add_parsers(sub) -> None:
    from inrecon.data.io.load import add_input_options

    s = command(sub, cmd_recon)
    s.add_argument("input", nargs="+", help="scan file (or many: then -o is a folder)")
    s.add_argument(
        "-o", "--output", required=True, help="output image file; with many inputs, the output folder"
    )
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
    g = s.add_argument_group("many inputs")
    g.add_argument(
        "--format",
        choices=list(_FORMATS),
        help="format of each OUT/STEM output (dicom: a series folder OUT/STEM/) [h5]; implies -o is a folder",
    )
    g.add_argument("--jobs", type=int, default=1, help="inputs reconstructed at once, in local processes [1]")
    g.add_argument(
        "--ray", action="store_true", help="run each input as a Ray task (also when RAY_ADDRESS is set)"
    )
    g.add_argument(
        "--ray-cpus-per-task", type=float, metavar="N", help="cores (torch threads) of a Ray task [1]"
    )
    g.add_argument("--ray-gpus-per-task", type=float, metavar="N", help="GPUs of a Ray task [0]")
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
