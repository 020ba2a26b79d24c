"""The ``inrecon`` command line: thin subcommands over the public API.

Every subcommand validates its input before any long computation; an :class:`~inrecon.errors.InreconError`
becomes one line on stderr (``inrecon: error: <problem>. Fix: <fix>``) and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inrecon import __version__
from inrecon.errors import InreconError

EPILOG = "Scan files follow the inrecon HDF5 contract (see the README); `inrecon info FILE` shows what a file holds."


def _parse_sets(items: list[str] | None) -> dict:
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise InreconError(f"--set {item!r} is not key=value", "write e.g. --set steps=2000")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _load_config_file(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise InreconError(f"config file {path!r} does not exist", "check the path given to --config")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InreconError(
            f"config file {path!r} is not valid JSON ({exc.msg} at line {exc.lineno})", "fix the JSON syntax"
        ) from None
    if not isinstance(data, dict):
        raise InreconError(f"config file {path!r} must hold a JSON object", 'write {"key": value, ...}')
    return data


def _json_default(o):
    import numpy as np
    import torch

    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, np.ndarray | np.generic):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=_json_default))


# --- info ------------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from inrecon.data.io.load import describe, load_scan

    scan = load_scan(args.file, **({"slice": args.slice} if args.slice is not None else {}))
    _print_json(describe(scan))
    return 0


# --- simulate --------------------------------------------------------------------------------------------
def _load_image_arg(args):
    import numpy as np

    from inrecon.data.phantoms import body_ct_phantom, brain_phantom, shepp_logan

    size = tuple(args.size)
    if args.image:
        from inrecon.data.io.images import read_image

        img = np.asarray(read_image(args.image))
        if img.ndim not in (2, 3):
            raise InreconError(f"--image {args.image} has shape {img.shape}", "give a 2D or 3D image")
        if np.iscomplexobj(img):
            return img.astype(np.complex64)
        img = img.astype(np.float32)
        lo, hi = float(img.min()), float(img.max())
        return (img - lo) / (hi - lo) if hi > lo and args.modality == "ct" else img
    if args.phantom == "brain":
        return brain_phantom(size, seed=args.seed, contrast=args.contrast)
    if args.phantom == "body":
        return body_ct_phantom(size, seed=args.seed)
    return shepp_logan(size)


def cmd_simulate(args) -> int:
    import numpy as np
    import torch

    from inrecon.data.io.hdf5 import write_scan

    if args.frames is not None:
        return _simulate_series(args)
    image = _load_image_arg(args)
    if args.modality == "mri":
        from inrecon.data import sampling
        from inrecon.physics.simulate.mri import simulate_mri

        shape = image.shape
        mask = traj = None
        pat = args.pattern
        if pat == "cartesian":
            mask = sampling.cartesian_1d(shape, args.af, acs=args.acs)
        elif pat == "poisson":
            mask = sampling.poisson_disc(shape, args.af, calib=(args.acs, args.acs), seed=args.seed)
        elif pat == "full":
            mask = torch.ones(shape, dtype=torch.bool)
        elif pat in ("radial", "golden"):
            n = max(shape)
            spokes = args.spokes or sampling.radial_spokes_for_af(n, args.af)
            traj = sampling.radial_trajectory(
                spokes, 2 * n if args.oversample else n, golden_angle=pat == "golden"
            )
        elif pat == "spiral":
            traj = sampling.spiral_trajectory(shape, n_interleaves=args.interleaves)
        scan = simulate_mri(
            image, n_coils=args.coils, mask=mask, trajectory=traj, snr_db=args.snr_db, seed=args.seed
        )
    else:
        from inrecon.data.scans import CTGeometry
        from inrecon.physics.simulate.ct import simulate_ct

        if image.ndim != 2:
            raise InreconError("CT simulation needs a 2D image", "pass a 2D --image or a 2D --size")
        geom = CTGeometry(
            kind=args.geometry,
            n_detectors=args.detectors,
            detector_spacing_mm=args.detector_spacing,
            image_shape=image.shape,
            pixel_size_mm=args.pixel_size,
            source_to_center_mm=args.sod if args.geometry == "fan" else None,
            center_to_detector_mm=args.odd if args.geometry == "fan" else None,
        )
        full = 2 * np.pi if args.geometry == "fan" else np.pi
        angles = torch.arange(args.views, dtype=torch.float32) * (full / args.views)
        scan = simulate_ct(np.asarray(image, np.float32), geom, angles, photons=args.photons, seed=args.seed)
    scan.provenance.setdefault("source", args.image or f"phantom:{args.phantom}:seed{args.seed}")
    write_scan(args.output, scan)
    print(f"wrote {args.output}")
    return 0


def _simulate_series(args) -> int:
    """``simulate --frames T``: a real-time MRI series (a needle moving through a brain phantom) -> series file."""
    from inrecon.recon.series import simulate_series, write_series

    if args.modality != "mri" or args.image:
        raise InreconError(
            "--frames simulates an MRI series of the built-in moving phantom",
            "drop --image/--modality ct, or drop --frames",
        )
    if args.pattern not in ("cartesian", "poisson") or len(args.size) != 2:
        raise InreconError(
            f"--frames with --pattern {args.pattern} --size {' '.join(map(str, args.size))}",
            "series are 2D (--size H W) with --pattern cartesian or poisson",
        )
    frames = simulate_series(
        n_frames=args.frames,
        shape=tuple(args.size),
        af=int(args.af) if args.pattern == "cartesian" else args.af,
        n_coils=args.coils,
        seed=args.seed,
        snr_db=args.snr_db,
        acs=args.acs,
        pattern=args.pattern,
    )
    write_series(args.output, frames)
    print(f"wrote {args.output} ({args.frames} frames; frame 0 fully sampled)")
    return 0


# --- recon -----------------------------------------------------------------------------------------------
def cmd_recon(args) -> int:
    import torch

    from inrecon.data.io.images import write_image
    from inrecon.data.io.load import load_scan
    from inrecon.recon.registry import get_method, run_method
    from inrecon.runtime import resolve_device

    spec = get_method(args.method)  # unknown method fails here, before reading anything
    overrides = _load_config_file(args.config)
    record = None
    if args.hparams:  # tuned values first, so that --set can still override them
        from inrecon.recon.inr.bilevel import load_hparams

        record = load_hparams(args.hparams)
        overrides.update(record["hparams"])
    overrides.update(_parse_sets(args.set))
    out = Path(args.output)
    _check_output_suffix(out)
    scan = load_scan(args.input, **({"slice": args.slice} if args.slice is not None else {}))
    device = resolve_device(args.device)
    scan = scan.to(device)
    if record is not None:
        from inrecon.recon.inr.bilevel import protocol_mismatches

        for msg in protocol_mismatches(record, scan):
            print(
                f"inrecon: warning: hyperparameters were tuned on another protocol ({msg})", file=sys.stderr
            )
    extra = {}
    if spec.needs_model:
        if not args.model:
            raise InreconError(f"method {args.method!r} needs a pre-trained model", "pass --model MODEL")
        extra["model"] = args.model
    if args.checkpoint_dir:
        extra["checkpoint_dir"] = args.checkpoint_dir
    result = run_method(args.method, scan, overrides, show_progress=not args.quiet, **extra)
    image = result.image.detach().cpu()
    meta = {"method": result.method, "config": result.config}
    kwargs = {}
    if (scan.modality == "ct" and out.suffix == ".dcm") or out.suffix == "":
        kwargs["hu_window"] = tuple(args.hu_window) if args.hu_window else None
    write_image(out, image, meta=meta, **kwargs)
    summary = {"output": str(out), "method": result.method, "seconds": result.info.get("seconds")}
    if scan.target is not None:
        from inrecon.metrics import evaluate

        summary["metrics"] = evaluate(
            image,
            scan.target.cpu(),
            roi=None if scan.roi is None else scan.roi.cpu(),
            scale=scan.modality == "mri",
        )
    _write_sidecar(out, result, summary)
    if not args.quiet:
        _print_json(summary)
    del torch
    return 0


_OUTPUT_SUFFIXES = (".h5", ".hdf5", ".nii", ".gz", ".npy", ".png", ".dcm", "")


def _check_output_suffix(out: Path) -> None:
    if out.suffix not in _OUTPUT_SUFFIXES:
        raise InreconError(
            f"output {str(out)!r} has an unsupported extension {out.suffix!r}",
            "use .h5, .nii, .nii.gz, .npy, .png, .dcm, or a folder (DICOM series)",
        )


def _write_sidecar(out: Path, result, summary: dict) -> None:
    from inrecon.data.atomic import atomic_path

    side = out.with_name(out.name + ".json") if out.suffix else out / "recon.json"
    payload = {"summary": summary, "config": result.config, "info": result.info, "version": __version__}
    with atomic_path(side, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default))


# --- pretrain --------------------------------------------------------------------------------------------
def _init_distributed(device_arg: str):
    """Join the torch.distributed group when started by torchrun (WORLD_SIZE > 1); returns the device."""
    import os

    import torch

    from inrecon.runtime import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_arg)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return device, world


def cmd_pretrain(args) -> int:
    from inrecon.data.io.load import load_scan
    from inrecon.recon.pretraining import get_pretrainer
    from inrecon.recon.registry import config_from_dict

    spec = get_pretrainer(args.method)
    overrides = _load_config_file(args.config)
    overrides.update(_parse_sets(args.set))
    cfg = config_from_dict(spec.config_cls, overrides)
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise InreconError(
            f"model output {str(out)!r} should end in .safetensors", "name it e.g. model.safetensors"
        )
    device, world = _init_distributed(args.device)
    if world > 1 and not spec.distributed:
        raise InreconError(
            f"{args.method} pre-training does not run data-parallel",
            "start it without torchrun (one process)",
        )
    scans, names = [], []
    for path in args.data:  # read and validate every file before any training starts
        scan = load_scan(path, **({"slice": args.slice} if args.slice is not None else {}))
        scans.append(scan.to(device))
        names.append(str(path))
    spec.fn(scans, cfg, out, names=names, show_progress=not args.quiet, checkpoint_dir=args.checkpoint_dir)
    import torch

    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(f"wrote {out}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


# --- demo ------------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from inrecon.experiments.demo import run_demo

    run_demo(quick=args.quick, out_dir=args.output, device=args.device, show_progress=not args.no_progress)
    return 0


# --- bench -----------------------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from inrecon.experiments.bench import available_experiments, run_bench

    if args.list or not args.names:
        for name, desc in available_experiments().items():
            print(f"{name:20s} {desc}")
        return 0
    names = list(available_experiments()) if args.names == ["all"] else args.names
    overrides = {}
    for k, v in _parse_sets(args.set).items():
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    for name in names:
        run_bench(
            name,
            quick=args.quick,
            out_dir=args.output,
            show_progress=not args.no_progress,
            overrides=overrides,
        )
    return 0


# --- metrics ---------------------------------------------------------------------------------------------
def cmd_metrics(args) -> int:
    import numpy as np

    from inrecon.data.io.images import read_image
    from inrecon.metrics import evaluate

    rec = np.asarray(read_image(args.recon))
    ref_path = Path(args.reference)
    ref = roi = None
    if ref_path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(ref_path, "r") as f:
            if "target" in f or "kspace" in f or "sinogram" in f:
                from inrecon.data.io.hdf5 import read_scan

                scan = read_scan(ref_path)
                if scan.target is None:
                    raise InreconError(
                        f"{ref_path} holds no 'target' reference image",
                        "pass a scan file with a target, or an image file",
                    )
                ref = scan.target.numpy()
                roi = None if scan.roi is None else scan.roi.numpy()
    if ref is None:
        ref = np.asarray(read_image(ref_path))
    if args.roi:
        roi = np.asarray(read_image(args.roi)) > 0
    if args.no_roi:
        roi = None
    _print_json(evaluate(rec, ref, roi=roi, scale=args.scale))
    return 0


# --- parser ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inrecon",
        description="Reconstruct MRI and CT images from raw measurements with physics-informed implicit "
        "neural representations (scan-specific, bilevel-tuned, DisINR) and classical baselines.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"inrecon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "info",
        help="describe a scan file (any supported format)",
        description="Print what a scan file holds: modality, shapes, sampling, geometry.",
    )
    s.add_argument(
        "file", help="scan file: inrecon .h5, fastMRI .h5, BART .cfl/.hdr, .npy/.npz, NIfTI, DICOM"
    )
    s.add_argument("--slice", type=int, help="slice index for multi-slice files (fastMRI)")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser(
        "simulate",
        help="simulate an acquisition from an image or a phantom",
        description="Simulate a multi-coil MRI acquisition (Cartesian, Poisson disc, radial, golden-angle "
        "radial, spiral) or a CT sinogram (fan or parallel beam) from an image file or a built-in phantom, "
        "and write it in the inrecon HDF5 format with the ground truth as 'target'.",
    )
    src = s.add_mutually_exclusive_group()
    src.add_argument("--image", help="image file (.npy, .nii, .png, DICOM, .h5 'image')")
    src.add_argument(
        "--phantom",
        choices=["brain", "body", "shepp-logan"],
        default="brain",
        help="built-in phantom (default: brain)",
    )
    s.add_argument("--modality", choices=["mri", "ct"], default="mri")
    s.add_argument(
        "--size", type=int, nargs="+", default=[256, 256], help="phantom size (H W [D]) (default 256 256)"
    )
    s.add_argument("--seed", type=int, default=0, help="random seed: phantom subject, pattern, noise")
    s.add_argument("--contrast", choices=["t1", "t2", "flair"], default="t1", help="brain phantom contrast")
    g = s.add_argument_group("MRI")
    g.add_argument(
        "--pattern",
        choices=["cartesian", "poisson", "radial", "golden", "spiral", "full"],
        default="cartesian",
        help="sampling pattern (default: 1D Cartesian with ACS)",
    )
    g.add_argument("--af", type=float, default=6.0, help="acceleration factor (default 6)")
    g.add_argument("--acs", type=int, default=24, help="fully sampled centre lines / calibration size (24)")
    g.add_argument("--coils", type=int, default=12, help="number of receive coils (default 12)")
    g.add_argument(
        "--snr-db", type=float, default=30.0, help="SNR in dB of the acquired samples (default 30)"
    )
    g.add_argument("--spokes", type=int, help="radial spokes (default from --af)")
    g.add_argument("--oversample", action="store_true", help="2x readout oversampling for radial")
    g.add_argument("--interleaves", type=int, default=16, help="spiral interleaves (default 16)")
    g.add_argument(
        "--frames",
        type=int,
        help="write a real-time series of this many frames instead (a needle moving through a brain phantom; "
        "frame 0 fully sampled, later frames at --af with a shifting Cartesian lattice) for `recon-series`",
    )
    g = s.add_argument_group("CT (defaults: the DisINR fan-beam geometry)")
    g.add_argument("--geometry", choices=["fan", "parallel"], default="fan")
    g.add_argument(
        "--views", type=int, default=60, help="number of views over 360 (fan) / 180 (parallel) degrees"
    )
    g.add_argument("--detectors", type=int, default=500, help="detector elements (default 500)")
    g.add_argument("--detector-spacing", type=float, default=2.0, help="detector spacing in mm (default 2)")
    g.add_argument("--pixel-size", type=float, default=1.0, help="image pixel size in mm (default 1)")
    g.add_argument("--sod", type=float, default=300.0, help="source-to-centre distance in mm (default 300)")
    g.add_argument("--odd", type=float, default=300.0, help="centre-to-detector distance in mm (default 300)")
    g.add_argument(
        "--photons",
        type=float,
        default=None,
        help="incident photons per ray for Poisson noise (default: noise-free)",
    )
    s.add_argument("-o", "--output", required=True, help="output scan file (.h5)")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser(
        "recon",
        help="reconstruct a scan",
        description="Reconstruct a scan with one method and write the image (format from the extension: "
        ".h5, .nii/.nii.gz, .npy, .png, .dcm or a folder for a DICOM series). The resolved config and run "
        "information are written beside it as OUTPUT.json; metrics are printed when the scan has a target.",
    )
    s.add_argument("input", help="scan file")
    s.add_argument("-o", "--output", required=True, help="output image file")
    s.add_argument(
        "--method",
        required=True,
        help="zf, cgsense, l1wavelet, tv (MRI); fbp, sart, tv (CT); ngp, imjense, bilevel, disinr, "
        "strainer, meta (INR)",
    )
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    s.add_argument("--config", help="JSON file of config values (overridden by --set)")
    s.add_argument("--hparams", help="JSON of tuned hyperparameters (from `inrecon tune`)")
    s.add_argument("--model", help="pre-trained model file (disinr, strainer, meta)")
    s.add_argument("--slice", type=int, help="slice index for multi-slice inputs")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    s.add_argument("--checkpoint-dir", help="write checkpoints here and resume from them (INR methods)")
    s.add_argument(
        "--hu-window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="CT: HU window the [0,1] image maps to, for DICOM output",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    s.set_defaults(func=cmd_recon)

    s = sub.add_parser(
        "pretrain",
        help="pre-train a population model (DisINR, STRAINER, Meta) from raw measurements",
        description="Pre-train a population model directly from the raw measurements of several scans (no "
        "images needed): every scan keeps its own forward model. All scans must share modality and matrix "
        "size. Writes a .safetensors model with its config and provenance. Data-parallel with torchrun: "
        "`torchrun --nproc_per_node 2 -m inrecon.cli pretrain ...` shards the subjects across processes.",
    )
    s.add_argument("--method", required=True, choices=["disinr", "strainer", "meta"])
    s.add_argument("--data", required=True, nargs="+", help="pre-training scan files")
    s.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. steps=2000, subjects_per_step=8 (repeatable)",
    )
    s.add_argument("--config", help="JSON file of config values")
    s.add_argument("--slice", type=int, help="slice index for multi-slice inputs")
    s.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    s.add_argument("--checkpoint-dir", help="checkpoint here and resume after a kill")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser(
        "metrics",
        help="PSNR / SSIM / NRMSE of a reconstruction against a reference (JSON)",
        description="Score a reconstruction the papers' way: magnitude, optional ROI, "
        "data range = reference max - min, optional least-squares scaling.",
    )
    s.add_argument("recon", help="reconstruction image file")
    s.add_argument("--reference", required=True, help="reference image, or a scan file with a 'target'")
    s.add_argument("--roi", help="ROI mask image (non-zero = inside); default: the scan's roi if any")
    s.add_argument("--no-roi", action="store_true", help="score the whole image")
    s.add_argument("--scale", action="store_true", help="least-squares scale the reconstruction first (MRI)")
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser(
        "demo",
        help="the main job: phantoms -> pre-train DisINR -> every method on unseen subjects -> report",
        description="Generate brain (MRI) and chest (CT) phantom populations, simulate their acquisitions, "
        "pre-train DisINR from the measurements of part of each population, reconstruct unseen subjects with "
        "the classical baselines, NGP and DisINR (plus IMJENSE, Meta and STRAINER in the full profile), print "
        "the table and write an HTML report. No data or downloads needed. --quick finishes in a few minutes on "
        "2 CPU cores; the default profile (256x256, 20 pre-training subjects) is meant for a GPU.",
    )
    s.add_argument("--quick", action="store_true", help="small sizes for a CPU (a few minutes)")
    s.add_argument("-o", "--output", default="inrecon-demo", help="output folder (default inrecon-demo)")
    s.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser(
        "bench",
        help="named experiments reproducing the papers' tables and figures (JSON, Markdown, HTML report)",
        description="Run named experiments (DisINR Tables 1-5 and 7, Figs. 5 and 7; the Bilevel paper's tuned vs "
        "default vs oracle, transfer and residual series). Each is a JSON config; --quick shrinks it for a CPU. "
        "Real data from INRECON_DATA where present, phantoms otherwise (the report says which). "
        "`inrecon bench --list` lists them; `inrecon bench all --quick` runs every one.",
    )
    s.add_argument("names", nargs="*", help="experiment names (or 'all'), or paths to JSON configs")
    s.add_argument("--list", action="store_true", help="list the experiments")
    s.add_argument("--quick", action="store_true", help="the small CPU profile of each experiment")
    s.add_argument("-o", "--output", default="inrecon-bench", help="output folder (default inrecon-bench)")
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override an experiment parameter (JSON values, e.g. n_test=3 or views=[60])",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_bench)

    from inrecon.cli.tuning import add_parsers

    add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except InreconError as exc:
        print(f"inrecon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inrecon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
