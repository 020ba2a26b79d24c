"""Scans inrecon has never seen, written by other tools, reconstructed as a user would (issue 10's check).

Each case is written to an inrecon HDF5 file (the README's contract) with h5py, numpy and an independent
forward model, never with inrecon's own simulators or projectors, then read back with ``load_scan`` and
reconstructed with the library defaults of each method, the classical weights chosen by hold-out as in the
quality suite (no weight or stopping step sees the reference). This is the check that the defaults generalise
beyond the quality suite:

- ``fan60``: lungdx A0002 slice 10 (another scanner than the tuning slices), 256 x 256 at 1.29 mm, projected
  at the native 512 x 512 (no inverse crime) with ASTRA's ``line_fanflat`` (source 600 mm, detector 400 mm
  from the centre), 60 views over 360 degrees, Poisson noise at 1e5 photons per ray (numpy);
- ``fan60-clean``: the same without noise;
- ``par90``: lungdx A0002 slice 22, 255 x 255 (odd, so that scikit-image's rotation centre is the README's
  image centre), scikit-image's ``radon`` (rotation and interpolation), 90 parallel views over 180 degrees,
  1e5 photons;
- ``brain-af6``: BART's fully sampled complex reconstruction of the in-vivo 8-coil brain (its first ESPIRiT
  map, real phase), 12 sigpy birdcage coils, 1D Cartesian AF 6 with 24 centre lines, complex noise at 30 dB
  (numpy); no coil maps in the file (ESPIRiT from the data, as a user's scan);
- ``dipy-af6``: the dipy T1 slice, the same acquisition;
- ``brainmag-af6``: the magnitude of ``brain-af6``'s image (real-valued, as simulators that start from
  magnitude images write), the same acquisition.
- ``brain-radial48``: ``brain-af6``'s image and coils, 48 golden-angle radial spokes of 460 samples (2x readout
  oversampling of the 230-pixel axis), k-space from sigpy's NUFFT (its own gridding, checked against the
  README's convention on a Cartesian trajectory before writing), complex noise at 30 dB; no maps in the file.

Every CT writer checks its geometry against the README's formulas with a point object before writing.

    python benchmarks/independent_scans.py --cases fan60 par90 --methods fbp sart tv ngp --threads 1
    python benchmarks/independent_scans.py --cases brain-af6 --methods cgsense l1wavelet tv ngp
    python benchmarks/independent_scans.py --cases fan60 par90 --methods tv ngp disinr --model ct=M.safetensors

A population method (``disinr``, ``strainer``, ``meta``) adapts the model given for the case's modality
(``--model ct=PATH``, ``--model mri=PATH``; ``inrecon pretrain`` or the DisINR benchmarks write them): a prior
pre-trained on inrecon's own simulations, scored on scans it has never seen (issue 11's check). A model that
does not fit a scan (a DisINR model serves one matrix size) gives a ``refused`` line for that case, and the
other cases run.

Prints one JSON line per reconstruction (PSNR / SSIM: CT over the whole image against the file's reference;
MRI magnitude, least-squares scaled, in the object's support) and a JSON summary with each method's margin
over the best classical method of the case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from inrecon import load_scan
from inrecon.data.io.bart import read_cfl
from inrecon.data.paths import data_root
from inrecon.errors import InreconError
from inrecon.experiments.drivers.quality import CLASSICAL as SUITE_CLASSICAL
from inrecon.metrics import evaluate
from inrecon.recon.api import resolve, run_method
from inrecon.recon.methods import METHODS

CLASSICAL = {"fbp", "sart", "tv", "zf", "cgsense", "l1wavelet", "pnp"}
MU_WATER = 0.0192  # attenuation of water per mm at ~70 keV


def _lungdx_mu(subject: str, index: int, factor: int) -> tuple[np.ndarray, float]:
    """A lungdx slice as attenuation per mm at ``factor`` times the native pixel size (block means)."""
    files = {"A0001": ("lungdx_A0001_5mm_hu.npz", 0.842), "A0002": ("lungdx_A0002_B40f_8mm_hu.npz", 0.646)}
    name, px = files[subject]
    hu = np.load(data_root() / "ct" / "lungdx" / name)["hu"][index].astype(np.float64)
    n = hu.shape[0] // factor
    hu = hu[: n * factor, : n * factor].reshape(n, factor, n, factor).mean((1, 3))
    return np.clip(MU_WATER * (1 + hu / 1000.0), 0, None), px * factor


def _block(mu: np.ndarray, f: int) -> np.ndarray:
    n = mu.shape[0] // f
    return mu[: n * f, : n * f].reshape(n, f, n, f).mean((1, 3))


def _point_detector(r: int, c: int, shape, px: float, angles, spacing: float, n: int, fan=None) -> np.ndarray:
    """README: pixel (r, c) at x = (c - W/2 + 1/2) px, y = (H/2 - 1/2 - r) px; detector axis (cos t, sin t),
    detector i at (i - N/2 + 1/2) * spacing; the fan source at Ds (sin t, -cos t), the detector at Dd from the
    centre. Returns the (fractional) detector index the point projects to at each angle."""
    h, w = shape
    x, y = (c - w / 2 + 0.5) * px, (h / 2 - 0.5 - r) * px
    s = x * np.cos(angles) + y * np.sin(angles)
    if fan is not None:
        ds, dd = fan
        depth = x * np.sin(angles) - y * np.cos(
            angles
        )  # along the central ray, from the centre to the source
        s = s * (ds + dd) / (ds - depth)
    return s / spacing + n / 2 - 0.5


def _centroids(sino: np.ndarray) -> np.ndarray:
    return (sino * np.arange(sino.shape[1])[None]).sum(1) / sino.sum(1)


def _noisy(sino: np.ndarray, photons: float, rng) -> np.ndarray:
    if not photons:
        return sino
    counts = rng.poisson(photons * np.exp(-sino))
    return -np.log(np.maximum(counts, 1) / photons)


def _write_ct(path: Path, sino, angles, target, px, attrs: dict, photons: float) -> None:
    with h5py.File(path, "w") as f:
        f["sinogram"] = sino.astype(np.float32)
        f["angles"] = np.asarray(angles, np.float32)
        f["target"] = target.astype(np.float32)
        f.attrs.update({**attrs, "modality": "ct", "pixel_size_mm": px, "image_shape": list(target.shape)})
        if photons:
            f.attrs.update({"photons": photons, "mu_per_unit": 1.0})


def write_fan(path: Path, subject="A0002", index=10, views=60, photons=1e5, seed=0) -> None:
    """Fan beam with ASTRA (CPU ``line_fanflat``) on the native grid; the reference is its 2x2 block mean."""
    import astra

    fine, px_f = _lungdx_mu(subject, index, 1)
    target, px = _block(fine, 2), px_f * 2
    ds_mm, dd_mm = 600.0, 400.0
    n_det = int(1.7 * target.shape[0])
    spacing = np.sqrt(2) * target.shape[0] * px * (ds_mm + dd_mm) / ds_mm * 1.02 / n_det
    angles = np.linspace(0, 2 * np.pi, views, endpoint=False)

    def project(img, pixel):
        h = img.shape[0] * pixel / 2
        vol = astra.create_vol_geom(img.shape[0], img.shape[1], -h, h, -h, h)
        proj = astra.create_proj_geom("fanflat", spacing, n_det, angles, ds_mm, dd_mm)
        pid = astra.create_projector("line_fanflat", proj, vol)
        sid, sino = astra.create_sino(img, pid)
        astra.data2d.delete(sid)
        astra.projector.delete(pid)
        return sino

    point = np.zeros((64, 64))
    point[10, 45] = 1.0
    want = _point_detector(10, 45, point.shape, 4 * px, angles, spacing, n_det, fan=(ds_mm, dd_mm))
    err = np.abs(_centroids(project(point, 4 * px)) - want).max()
    if err > 0.3:
        raise RuntimeError(f"ASTRA's fan geometry disagrees with the README by {err:.2f} detector pixels")
    sino = _noisy(project(fine, px_f), photons, np.random.default_rng(seed))
    attrs = {"geometry": "fan", "source_to_center_mm": ds_mm, "center_to_detector_mm": dd_mm}
    attrs.update({"detector_spacing_mm": spacing, "n_detectors": n_det})
    _write_ct(path, sino, angles, target, px, attrs, photons)


def write_parallel(path: Path, subject="A0002", index=22, views=90, photons=1e5, seed=0) -> None:
    """Parallel beam with scikit-image's ``radon`` (rotation and interpolation, not line intersection) of the
    2x2 block mean cropped to 255 x 255: with an odd grid its rotation centre is the README's image centre."""
    from skimage.transform import radon

    fine, px_f = _lungdx_mu(subject, index, 1)
    target, px = _block(fine, 2)[:255, :255], px_f * 2
    angles = np.linspace(0, np.pi, views, endpoint=False)
    deg = np.rad2deg(angles)
    point = np.zeros(target.shape)
    point[40, 180] = 1.0
    sino_p = radon(point, theta=deg, circle=False).T
    n_det = sino_p.shape[1]
    err = np.abs(_centroids(sino_p) - _point_detector(40, 180, target.shape, px, angles, px, n_det)).max()
    if err > 0.3:
        raise RuntimeError(f"scikit-image's radon disagrees with the README by {err:.2f} detector pixels")
    sino = _noisy(radon(target, theta=deg, circle=False).T * px, photons, np.random.default_rng(seed))
    attrs = {"geometry": "parallel", "detector_spacing_mm": px, "n_detectors": n_det}
    _write_ct(path, sino, angles, target, px, attrs, photons)


def _mri_image(source: str) -> np.ndarray:
    """The source image of an MRI case (the image only; the scan is written without inrecon), peak 1."""
    root = data_root()
    if source in ("brain", "brain-magnitude"):
        x = read_cfl(root / "mri" / "brain8ch_bart" / "img.cfl")[0, :, :, 0, 0]
        if source == "brain-magnitude":  # a real-valued image, as simulators that start from magnitudes write
            x = np.abs(x)
    else:
        x = np.load(root / "images" / "dipy_t1_coronal_slice.npy")
    return (x / np.abs(x).max()).astype(np.complex64)


def _complex_noise(shape, signal: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """Complex white noise whose standard deviation is ``snr_db`` below the RMS of the acquired ``signal``."""
    rng = np.random.default_rng(seed)
    std = np.sqrt(np.mean(np.abs(signal) ** 2)) / 10 ** (snr_db / 20)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * std / np.sqrt(2)


def write_cartesian(path: Path, source="brain", af=6, acs=24, coils=12, snr_db=30.0, seed=0) -> None:
    """1D Cartesian multi-coil k-space of a real image with sigpy's birdcage maps (not in the file)."""
    import sigpy.mri as smri

    x = _mri_image(source)
    h, w = x.shape
    maps = smri.birdcage_maps((coils, h, w), r=1.3).astype(np.complex64)
    axes = (-2, -1)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(maps * x, axes=axes), norm="ortho"), axes=axes)
    mask = np.zeros((h, w), np.uint8)
    mask[:, ::af] = 1
    mask[:, w // 2 - acs // 2 : w // 2 + acs // 2] = 1
    noise = _complex_noise(k.shape, k[:, mask.astype(bool)], snr_db, seed)
    with h5py.File(path, "w") as f:
        f["kspace"] = ((k + noise) * mask).astype(np.complex64)
        f["mask"] = mask
        f["target"] = np.abs(x).astype(np.float32)
        f.attrs["modality"] = "mri"


def write_radial(path: Path, spokes=48, coils=12, snr_db=30.0, seed=0) -> None:
    """Golden-angle radial multi-coil k-space of the BART brain image with sigpy's NUFFT and birdcage maps."""
    import sigpy as sp
    import sigpy.mri as smri

    x = _mri_image("brain")
    h, w = x.shape
    # the README's convention on a Cartesian trajectory is the centred orthonormal FFT; sigpy's coordinates
    # are in cycles per field of view (k radians per pixel = 2 pi coord / N)
    ky, kx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    cart = np.stack([ky, kx], -1).reshape(-1, 2).astype(np.float32)
    fftc = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))
    err = np.abs(sp.nufft(x, cart).reshape(h, w) - fftc).max() / np.abs(fftc).max()
    if err > 1e-2:
        raise RuntimeError(f"sigpy's NUFFT disagrees with the README's k-space convention by {err:.1e}")
    n_read = 2 * max(h, w)
    r = np.pi * (np.arange(n_read) - n_read // 2) / (n_read // 2)  # radians per pixel, [-pi, pi)
    angles = np.arange(spokes) * np.pi * (np.sqrt(5) - 1) / 2  # golden angle (111.25 degrees)
    traj = np.stack([np.outer(np.sin(angles), r), np.outer(np.cos(angles), r)], -1).reshape(-1, 2)
    coord = traj * np.array([h, w]) / (2 * np.pi)
    maps = smri.birdcage_maps((coils, h, w), r=1.3).astype(np.complex64)
    k = sp.nufft(maps * x, coord.astype(np.float32))
    noise = _complex_noise(k.shape, k, snr_db, seed)
    with h5py.File(path, "w") as f:
        f["kspace"] = (k + noise).astype(np.complex64)
        f["trajectory"] = traj.astype(np.float32)
        f["target"] = np.abs(x).astype(np.float32)
        f.attrs["modality"] = "mri"
        f.attrs["image_shape"] = [h, w]


CASES = {
    "fan60": lambda p: write_fan(p),
    "fan60-clean": lambda p: write_fan(p, photons=0),
    "par90": lambda p: write_parallel(p),
    "brain-af6": lambda p: write_cartesian(p, "brain"),
    "dipy-af6": lambda p: write_cartesian(p, "dipy"),
    "brainmag-af6": lambda p: write_cartesian(p, "brain-magnitude"),
    "brain-radial48": lambda p: write_radial(p),
}


def score(image: torch.Tensor, target: torch.Tensor, mri: bool) -> dict:
    """CT: the whole image; MRI: magnitude in the object's support (the reference above 5 % of its maximum,
    closed and filled), least-squares scaled."""
    if not mri:
        return evaluate(image, target)
    from scipy import ndimage

    a = target.abs().cpu().numpy()
    roi = ndimage.binary_fill_holes(ndimage.binary_closing(a > 0.05 * a.max(), iterations=3))
    return evaluate(image, target, roi=torch.from_numpy(roi), scale=True)


def case_modality(case: str) -> str:
    return "ct" if case.startswith(("fan", "par")) else "mri"


def case_methods(case: str, methods: list[str] | None) -> list[str]:
    """``--methods``, or the default methods of the case's modality."""
    if methods:
        return methods
    if case_modality(case) == "mri":
        return ["cgsense", "l1wavelet", "tv", "pnp", "ngp"]
    return ["fbp", "sart", "tv", "ngp"]


def parse_models(items: list[str]) -> dict[str, Path]:
    """``["ct=PATH", "mri=PATH"]`` -> ``{"ct": PATH, ...}``, every file checked before any work."""
    models: dict[str, Path] = {}
    for item in items:
        modality, sep, path = item.partition("=")
        if not sep or modality not in ("ct", "mri") or not path:
            raise InreconError(
                f"--model {item!r} is not MODALITY=PATH", "write --model ct=PATH or --model mri=PATH"
            )
        if modality in models:
            raise InreconError(f"--model gives two {modality} models", f"give one --model {modality}=PATH")
        if not Path(path).is_file():
            raise InreconError(f"--model {item}: no such file", "pass a model written by inrecon pretrain")
        models[modality] = Path(path)
    return models


def model_for(spec, modality: str, models: dict[str, Path]) -> Path | None:
    """The model a population method adapts on a scan of ``modality`` (None for the other methods)."""
    if not spec.needs_model:
        return None
    if modality not in models:
        raise InreconError(
            f"method {spec.name!r} needs a pre-trained model for the {modality} cases",
            f"pass --model {modality}=PATH (inrecon pretrain --method {spec.name} ...)",
        )
    return models[modality]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["fan60", "par90", "brain-af6"], choices=sorted(CASES))
    ap.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="default: fbp sart tv ngp (CT), cgsense l1wavelet tv ngp (MRI)",
    )
    ap.add_argument(
        "--dir", default="independent-scans", help="where the written scans go (reused if present)"
    )
    ap.add_argument("--set", action="append", default=[], help="INR override key=json (e.g. prior.tv=0.01)")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODALITY=PATH",
        help="pre-trained model of the population methods for the cases of one modality (ct or mri)",
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    over = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    models = parse_models(args.model)
    for case in args.cases:  # every population method's model, before any scan is written or fitted
        modality = case_modality(case)
        for method in case_methods(case, args.methods):
            spec = METHODS.resolve(method, modality)
            if modality in spec.modalities:
                model_for(spec, modality, models)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for case in args.cases:
        path = out / f"{case}.h5"
        if not path.exists():
            CASES[case](path)
        modality = case_modality(case)
        # classical weights by hold-out, as in the quality suite (``lam=auto``, ``lam_rel=auto``)
        suite = {r.method: r.overrides for r in SUITE_CLASSICAL[modality]}
        for method in case_methods(case, args.methods):
            scan = load_scan(path)
            try:
                spec = resolve(method, scan)
            except InreconError:  # not a method for this modality (a --methods list spanning both)
                continue
            model = model_for(spec, modality, models)
            t0 = time.perf_counter()
            extra = suite.get(method, {}) if method in CLASSICAL else over
            try:
                res = run_method(method, scan, dict(extra or {}), show_progress=False, model=model)
            except InreconError as err:
                if model is None:
                    raise
                # a model that does not fit this scan (another matrix size): said, and the other cases still run
                print(json.dumps({"case": case, "method": method, "refused": str(err)}), flush=True)
                continue
            m = score(res.image, scan.target, modality == "mri")
            keep = {
                k: res.info[k]
                for k in (
                    "chosen_steps",
                    "prior_tv",
                    "prior_phase",
                    "prior_scores",
                    "phase_roughness",
                    "lam",
                    "lam_rel",
                )
                if k in res.info
            }
            if (res.info.get("holdout") or {}).get("best_val_loss") is not None:
                keep["held-out loss"] = f"{res.info['holdout']['best_val_loss']:.5g}"
            row = {"case": case, "method": method, "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 3)}
            row.update(seconds=round(time.perf_counter() - t0, 1), **{k: str(v) for k, v in keep.items()})
            print(json.dumps(row), flush=True)
            results.append(row)
    summary = {}
    for case in args.cases:
        rows = [r for r in results if r["case"] == case]
        classical = [r for r in rows if r["method"] in CLASSICAL]
        best = max(classical, key=lambda r: r["psnr"]) if classical else None
        summary[case] = {
            r["method"]: r["psnr"] if best is None else f"{r['psnr']} ({r['psnr'] - best['psnr']:+.2f})"
            for r in rows
        }
    env = {
        "models": {k: str(v) for k, v in models.items()},
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps({"summary": summary, "overrides": over, "environment": env}, indent=1))


if __name__ == "__main__":
    main()
