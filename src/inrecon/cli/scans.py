"""``inrecon info``, ``simulate`` and ``metrics``: describe, make and score scans."""

from __future__ import annotations

from pathlib import Path

from inrecon.cli.common import command, print_json
from inrecon.errors import InreconError

__all__ = ["add_parsers"]


def cmd_info(args) -> int:
    """Describe a scan file (any supported format): modality, shapes, sampling, geometry, as JSON."""
    from inrecon.data.io.load import describe, load_scan

    scan = load_scan(args.file, **({"slice": args.slice} if args.slice is not None else {}))
    print_json(describe(scan))
    return 0


def _image_arg(args):
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


def _simulate_ct(args, image):
    import numpy as np

    from inrecon.data.scans import CTGeometry
    from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct

    if image.ndim != 2:
        raise InreconError("CT simulation needs a 2D image", "pass a 2D --image or a 2D --size")
    fan = args.geometry == "fan"
    geom = CTGeometry(
        kind=args.geometry,
        n_detectors=args.detectors,
        detector_spacing_mm=args.detector_spacing,
        image_shape=image.shape,
        pixel_size_mm=args.pixel_size,
        source_to_center_mm=args.sod if fan else None,
        center_to_detector_mm=args.odd if fan else None,
    )
    angles = full_scan_angles(args.views, args.geometry)
    return simulate_ct(np.asarray(image, np.float32), geom, angles, photons=args.photons, seed=args.seed)


def _simulate_series(args) -> int:
    """``simulate --frames T``: a real-time MRI series (a needle moving through a brain phantom)."""
    from inrecon.data.io.hdf5 import write_scan
    from inrecon.physics.simulate.series import simulate_series

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
    series = simulate_series(
        n_frames=args.frames,
        shape=tuple(args.size),
        af=int(args.af) if args.pattern == "cartesian" else args.af,
        n_coils=args.coils,
        seed=args.seed,
        snr_db=args.snr_db,
        acs=args.acs,
        pattern=args.pattern,
    )
    write_scan(args.output, series)
    print(f"wrote {args.output} ({args.frames} frames; frame 0 fully sampled)")
    return 0


def cmd_simulate(args) -> int:
    """Simulate an acquisition from an image or a phantom.

    A multi-coil MRI acquisition (Cartesian, Poisson disc, radial, golden-angle radial, spiral) or a CT sinogram
    (fan or parallel beam) of an image file or a built-in phantom, written in the inrecon HDF5 format with the
    ground truth as 'target'.
    """
    from inrecon.data.io.hdf5 import write_scan

    if args.frames is not None:
        return _simulate_series(args)
    image = _image_arg(args)
    scan = _simulate_mri(args, image) if args.modality == "mri" else _simulate_ct(args, image)
    scan.provenance.setdefault("source", args.image or f"phantom:{args.phantom}:seed{args.seed}")
    write_scan(args.output, scan)
    print(f"wrote {args.output}")
    return 0


def cmd_metrics(args) -> int:
    """PSNR / SSIM / NRMSE of a reconstruction against a reference, as JSON.

    Scored the papers' way: magnitude, optional ROI, data range = reference max - min, optional least-squares
    scaling.
    """
    import numpy as np

    from inrecon.data.io.images import read_image
    from inrecon.metrics import evaluate

    rec = np.asarray(read_image(args.recon))
    ref_path = Path(args.reference)
    ref = roi = None
    if ref_path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(ref_path, "r") as f:
            is_scan = "target" in f or "kspace" in f or "sinogram" in f
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
    if args.roi:
        roi = np.asarray(read_image(args.roi)) > 0
    if args.no_roi:
        roi = None
    print_json(evaluate(rec, ref, roi=roi, scale=args.scale))
    return 0


def add_parsers(sub) -> None:
    s = command(sub, cmd_info)
    s.add_argument(
        "file", help="scan file: inrecon .h5, fastMRI .h5, BART .cfl/.hdr, .npy/.npz, NIfTI, DICOM"
    )
    s.add_argument("--slice", type=int, help="slice index for multi-slice files (fastMRI)")

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
    g.add_argument("--pixel-size", type=float, default=1.0, help="image pixel size in mm [%(default)s]")
    g.add_argument("--sod", type=float, default=300.0, help="source-to-centre distance in mm [%(default)s]")
    g.add_argument("--odd", type=float, default=300.0, help="centre-to-detector distance in mm [%(default)s]")
    g.add_argument(
        "--photons", type=float, default=None, help="incident photons per ray for Poisson noise [none]"
    )
    s.add_argument("-o", "--output", required=True, help="output scan file (.h5)")

    s = command(sub, cmd_metrics)
    s.add_argument("recon", help="reconstruction image file")
    s.add_argument("--reference", required=True, help="reference image, or a scan file with a 'target'")
    s.add_argument("--roi", help="ROI mask image (non-zero = inside); default: the scan's roi if any")
    s.add_argument("--no-roi", action="store_true", help="score the whole image")
    s.add_argument("--scale", action="store_true", help="least-squares scale the reconstruction first (MRI)")
