"""``inrecon info``, ``simulate`` and ``metrics``: describe, make and score scans."""

from __future__ import annotations

import math
import time
from pathlib import Path

from inrecon.cli.common import LOG, add_common, check_memory_for, check_outputs, command, print_json
from inrecon.errors import InreconError

__all__ = ["add_parsers"]

_SCAN_SUFFIXES = (".h5", ".hdf5")


def check_file_memory(args, path) -> None:
    """Reading a file needs about twice its size (the file's arrays plus their tensors)."""
    p = Path(path)
    if p.is_file():
        check_memory_for(args, 2 * p.stat().st_size, f"reading {p}")


def cmd_info(args) -> int:
    """Describe a scan file (any supported format): modality, shapes, sampling, geometry, as JSON."""
    from inrecon.data.io.load import describe, load_scan, scan_options

    check_outputs(inputs=[args.file])
    check_file_memory(args, args.file)
    scan = load_scan(args.file, **scan_options(args))
    print_json(describe(scan))
    return 0


def _image_arg(args):
    import numpy as np

    from inrecon.data.phantoms import body_ct_phantom, brain_phantom, shepp_logan

    size = tuple(args.size)
    if args.image:
        from inrecon.data.io.images import read_image

        check_file_memory(args, args.image)
        img = np.asarray(read_image(args.image))
        if img.ndim not in (2, 3):
            raise InreconError(f"--image {args.image} has shape {img.shape}", "give a 2D or 3D image")
        _check_simulation_memory(args, img.shape)
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


def _check_simulate_args(args) -> None:
    """The numbers of ``simulate`` that no simulator can use, refused with the flag's name."""
    positive = [("--coils", args.coils), ("--views", args.views), ("--detectors", args.detectors)]
    positive += [("--interleaves", args.interleaves), ("--acs", args.acs)]
    positive += [("--spokes", args.spokes), ("--frames", args.frames)]
    for flag, value in positive:
        if value is not None and value < 1:
            raise InreconError(f"{flag} {value} must be at least 1", f"give {flag} a positive whole number")
    for flag, value in [("--detector-spacing", args.detector_spacing), ("--pixel-size", args.pixel_size)]:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InreconError(
                f"{flag} {value} must be a positive length (mm)", f"give {flag} in mm, e.g. 1.0"
            )
    for flag, value in [
        ("--af", args.af),
        ("--snr-db", args.snr_db),
        ("--sod", args.sod),
        ("--odd", args.odd),
    ]:
        if not math.isfinite(value):
            raise InreconError(f"{flag} {value} is not a finite number", f"give {flag} a number")
    if args.photons is not None and not (math.isfinite(args.photons) and args.photons > 0):
        raise InreconError(
            f"--photons {args.photons} must be > 0", "give the incident photons per ray, e.g. 1e5"
        )
    if not args.image and (len(args.size) not in (2, 3) or min(args.size) < 1):
        raise InreconError(
            f"--size {' '.join(map(str, args.size))} is not a 2D or 3D image size", "give --size H W or D H W"
        )
    uses_af = args.pattern in ("cartesian", "poisson") or (
        args.pattern in ("radial", "golden") and not args.spokes
    )
    if args.modality == "mri" and uses_af and args.af <= 1:
        raise InreconError(
            f"--af {args.af:g} with --pattern {args.pattern}: an acceleration must be > 1",
            "for a fully sampled acquisition use --pattern full; otherwise give --af > 1, e.g. --af 4",
        )


def _check_simulation_memory(args, shape) -> None:
    from inrecon.resources import estimate_ct, estimate_mri

    shape = tuple(int(s) for s in shape)
    what = f"simulate {'x'.join(map(str, shape))}"
    if args.modality == "ct":
        est = estimate_ct(shape[-2:], args.views, args.detectors)
        what += f", {args.views} views x {args.detectors} detectors"
    else:
        n_samples = (
            math.prod(shape) * (2 if args.oversample else 1)
            if args.pattern not in ("cartesian", "poisson", "full")
            else None
        )
        est = estimate_mri(shape, args.coils, n_samples) * (args.frames or 1)
        what += f", {args.coils} coils" + (f", {args.frames} frames" if args.frames else "")
    check_memory_for(args, est, what)


def _simulate_mri(args, image):
    from inrecon.data.sampling import make_pattern
    from inrecon.physics.simulate.mri import simulate_mri

    mask, traj = make_pattern(
        args.pattern,
        image.shape,
        args.af,
        acs=args.acs,
        seed=args.seed,
        spokes=args.spokes,
        oversample=args.oversample,
        interleaves=args.interleaves,
    )
    return simulate_mri(
        image, n_coils=args.coils, mask=mask, trajectory=traj, snr_db=args.snr_db, seed=args.seed
    )


def _ct_geometry(args, shape):
    from inrecon.data.scans import CTGeometry

    fan = args.geometry == "fan"
    pixel_size = args.pixel_size
    if pixel_size is None and args.image:
        from inrecon.data.io.images import image_pixel_size

        pixel_size = image_pixel_size(args.image)  # the image's own spacing (DICOM, NIfTI, .h5)
    return CTGeometry(
        kind=args.geometry,
        n_detectors=args.detectors,
        detector_spacing_mm=args.detector_spacing,
        image_shape=shape,
        pixel_size_mm=1.0 if pixel_size is None else pixel_size,
        source_to_center_mm=args.sod if fan else None,
        center_to_detector_mm=args.odd if fan else None,
    )


def _simulate_ct(args, image):
    import numpy as np

    from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct

    if image.ndim != 2:
        raise InreconError("CT simulation needs a 2D image", "pass a 2D --image or a 2D --size")
    geom = _ct_geometry(args, image.shape)
    angles = full_scan_angles(args.views, args.geometry)
    scan = simulate_ct(np.asarray(image, np.float32), geom, angles, photons=args.photons, seed=args.seed)
    if not args.image and args.phantom == "body":
        from inrecon.data.phantoms import HU_WINDOW

        scan.provenance["hu_window"] = list(HU_WINDOW)  # the phantom is HU windowed to [0, 1]
    return scan


def _check_series_args(args) -> None:
    if args.modality != "mri" or args.image:
        raise InreconError(
            "--frames simulates an MRI series of the built-in moving phantom",
            "drop --image/--modality ct, or --frames",
        )
    if args.pattern not in ("cartesian", "poisson") or len(args.size) != 2:
        raise InreconError(
            f"--frames with --pattern {args.pattern} --size {' '.join(map(str, args.size))}",
            "series are 2D (--size H W) with --pattern cartesian or poisson",
        )


def _simulate_series(args):
    """``simulate --frames T``: a real-time MRI series (a needle moving through a brain phantom)."""
    from inrecon.physics.simulate.series import simulate_series

    return simulate_series(
        n_frames=args.frames,
        shape=tuple(args.size),
        af=int(args.af) if args.pattern == "cartesian" else args.af,
        n_coils=args.coils,
        seed=args.seed,
        snr_db=args.snr_db,
        acs=args.acs,
        pattern=args.pattern,
    )


def _check_simulate(args) -> None:
    """Everything ``simulate`` can check before making an image: flags, output path, memory."""
    _check_simulate_args(args)
    out = Path(args.output)
    if not args.output.strip() or out.suffix not in _SCAN_SUFFIXES:
        raise InreconError(
            f"output {args.output!r} is not an HDF5 scan file name",
            "name it e.g. scan.h5 (simulate writes the inrecon HDF5 format: .h5 or .hdf5)",
        )
    check_outputs([out], inputs=[args.image])
    if args.frames is not None:
        _check_series_args(args)
    if args.modality == "ct" and not args.image:
        if len(args.size) != 2:
            raise InreconError("CT simulation needs a 2D image", "give a 2D --size H W")
        _ct_geometry(args, tuple(args.size))  # an impossible geometry fails here, before the phantom
    if not args.image:
        _check_simulation_memory(args, args.size)


def cmd_simulate(args) -> int:
    """Simulate an acquisition from an image or a phantom.

    A multi-coil MRI acquisition (Cartesian, Poisson disc, radial, golden-angle radial, spiral) or a CT sinogram
    (fan or parallel beam) of an image file or a built-in phantom, written in the inrecon HDF5 format with the
    ground truth as 'target'. Prints {"output", "modality", "image_shape", "seconds"} as JSON.
    """
    from inrecon.cli.housekeeping import clean_stale_temporaries
    from inrecon.data.io.hdf5 import write_scan

    _check_simulate(args)
    t0 = time.perf_counter()
    clean_stale_temporaries(Path(args.output).parent)
    if args.frames is not None:
        scan = _simulate_series(args)
    else:
        image = _image_arg(args)
        scan = _simulate_mri(args, image) if args.modality == "mri" else _simulate_ct(args, image)
        scan.provenance.setdefault("source", args.image or f"phantom:{args.phantom}:seed{args.seed}")
    write_scan(args.output, scan)
    extra = {"frames": args.frames} if args.frames is not None else {}
    LOG.info("wrote %s", args.output)
    print_json(
        {
            "output": args.output,
            "modality": scan.modality,
            "image_shape": list(scan.image_shape),
            **extra,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return 0


def _reference(args, ref_path: Path):
    """The reference image and ROI of ``--reference`` (a scan file with a target, or an image)."""
    import numpy as np

    from inrecon.data.io.images import read_image

    ref = roi = None
    if ref_path.suffix in (".h5", ".hdf5") and ref_path.is_file():
        import h5py

        try:
            with h5py.File(ref_path, "r") as f:
                is_scan = "target" in f or "kspace" in f or "sinogram" in f
        except OSError:
            is_scan = False  # not HDF5: the image reader says what it is
        if is_scan:
            from inrecon.data.io.hdf5 import read_scan

            scan = read_scan(ref_path)
            if scan.target is None:
                raise InreconError(
                    f"{ref_path} holds no 'target' reference image",
                    "pass a scan file with a target, or an image",
                )
            ref = scan.target.numpy()
            roi = None if scan.roi is None else scan.roi.numpy()
    if ref is None:
        ref = np.asarray(read_image(ref_path))
    return ref, roi


def cmd_metrics(args) -> int:
    """PSNR / SSIM / NRMSE of a reconstruction against a reference, as JSON.

    Scored the papers' way: magnitude, optional ROI, data range = reference max - min, optional least-squares
    scaling.
    """
    import numpy as np

    from inrecon.data.io.images import read_image
    from inrecon.metrics import evaluate

    check_outputs(inputs=[args.recon, args.reference, args.roi])
    for flag, path in (("recon", args.recon), ("--reference", args.reference), ("--roi", args.roi)):
        if path is not None and not (Path(path).exists() or Path(f"{path}.cfl").exists()):
            raise InreconError(f"{flag} file {path!r} does not exist", "check the path")
        if path is not None:
            check_file_memory(args, path)
    rec = np.asarray(read_image(args.recon))
    ref, roi = _reference(args, Path(args.reference))
    if args.roi:
        roi = np.asarray(read_image(args.roi)) > 0
    if args.no_roi:
        roi = None
    print_json(evaluate(rec, ref, roi=roi, scale=args.scale))
    return 0


def add_parsers(sub) -> None:
    s = command(sub, cmd_info)
    s.add_argument(
        "file",
        help="scan file: inrecon .h5, fastMRI .h5, ISMRMRD .h5, .mat, BART .cfl/.hdr, .npy/.npz, NIfTI, DICOM",
    )
    s.add_argument("--slice", type=int, help="slice index for multi-slice files (fastMRI, ISMRMRD)")
    from inrecon.data.io.load import add_input_options

    add_input_options(s)
    add_common(s, device=False)

    s = command(sub, cmd_simulate)
    src = s.add_mutually_exclusive_group()
    src.add_argument("--image", help="image file (.npy, .nii, .png, DICOM, .h5 'image')")
    src.add_argument(
        "--phantom",
        choices=["brain", "body", "shepp-logan"],
        default="brain",
        help="built-in phantom [%(default)s]",
    )
    s.add_argument("--modality", choices=["mri", "ct"], default="mri", help="[%(default)s]")
    s.add_argument(
        "--size", type=int, nargs="+", default=[256, 256], help="phantom size H W [D] [%(default)s]"
    )
    s.add_argument(
        "--seed", type=int, default=0, help="random seed: phantom subject, pattern, noise [%(default)s]"
    )
    s.add_argument(
        "--contrast", choices=["t1", "t2", "flair"], default="t1", help="brain contrast [%(default)s]"
    )
    g = s.add_argument_group("MRI")
    from inrecon.data.sampling import PATTERNS

    g.add_argument(
        "--pattern", choices=PATTERNS, default="cartesian", help="sampling pattern [%(default)s: 1D with ACS]"
    )
    g.add_argument("--af", type=float, default=6.0, help="acceleration factor [%(default)s]")
    g.add_argument(
        "--acs", type=int, default=24, help="fully sampled centre lines / calibration size [%(default)s]"
    )
    g.add_argument("--coils", type=int, default=12, help="number of receive coils [%(default)s]")
    g.add_argument(
        "--snr-db", type=float, default=30.0, help="SNR in dB of the acquired samples [%(default)s]"
    )
    g.add_argument("--spokes", type=int, help="radial spokes (default from --af)")
    g.add_argument("--oversample", action="store_true", help="2x readout oversampling for radial")
    g.add_argument("--interleaves", type=int, default=16, help="spiral interleaves [%(default)s]")
    g.add_argument(
        "--frames",
        type=int,
        help="write a real-time series of this many frames instead (a needle moving through a brain phantom; "
        "frame 0 fully sampled, later frames at --af with a shifting Cartesian lattice)",
    )
    g = s.add_argument_group("CT (defaults: the DisINR fan-beam geometry)")
    g.add_argument("--geometry", choices=["fan", "parallel"], default="fan", help="[%(default)s]")
    g.add_argument(
        "--views", type=int, default=60, help="views over 360 (fan) / 180 (parallel) degrees [%(default)s]"
    )
    g.add_argument("--detectors", type=int, default=500, help="detector elements [%(default)s]")
    g.add_argument("--detector-spacing", type=float, default=2.0, help="detector spacing in mm [%(default)s]")
    g.add_argument(
        "--pixel-size", type=float, default=None, help="image pixel size in mm [from --image, else 1.0]"
    )
    g.add_argument("--sod", type=float, default=300.0, help="source-to-centre distance in mm [%(default)s]")
    g.add_argument("--odd", type=float, default=300.0, help="centre-to-detector distance in mm [%(default)s]")
    g.add_argument(
        "--photons", type=float, default=None, help="incident photons per ray for Poisson noise [none]"
    )
    s.add_argument("-o", "--output", required=True, help="output scan file (.h5)")
    add_common(s, device=False)

    s = command(sub, cmd_metrics)
    s.add_argument("recon", help="reconstruction image file")
    s.add_argument("--reference", required=True, help="reference image, or a scan file with a 'target'")
    s.add_argument("--roi", help="ROI mask image (non-zero = inside); default: the scan's roi if any")
    s.add_argument("--no-roi", action="store_true", help="score the whole image")
    s.add_argument("--scale", action="store_true", help="least-squares scale the reconstruction first (MRI)")
    add_common(s, device=False)
