"""Classical reconstructions of the real 8-coil brain scan (BART workshop, Poisson-disc, 12.7 % sampled).

Scored against the reference from the fully sampled data (root-sum-of-squares of BART's two ESPIRiT-map
images), magnitude, least-squares scaled, inside the ESPIRiT map support (the Bilevel paper's convention);
whole-image numbers are printed too (``pytest -s``). Coil maps: sigpy's ``EspiritCalib`` (shared by our
methods and sigpy's own L1-wavelet, so both solve the same problem). Weights chosen by hold-out never see the
reference; the "oracle" sweeps (slow) do, for context only.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from inrecon.data.io.bart import read_cfl
from inrecon.data.scans import MRIScan
from inrecon.metrics import evaluate
from inrecon.recon.api import run_method

pytestmark = pytest.mark.realdata

KSP = "mri/brain8ch_bart/ksp.cfl"
IMG = "mri/brain8ch_bart/img.cfl"


@functools.lru_cache(maxsize=1)
def _load(ksp_path: str, img_path: str):
    mr = pytest.importorskip("sigpy.mri")
    ksp = np.ascontiguousarray(read_cfl(ksp_path)[0].transpose(2, 0, 1))  # (1,180,230,8) -> (8,180,230)
    img = read_cfl(img_path)[0, :, :, 0, :]  # (1,180,230,1,2) -> (180,230,2)
    ref = np.sqrt((np.abs(img) ** 2).sum(-1)).astype(np.float32)
    maps = mr.app.EspiritCalib(ksp, show_pbar=False).run().astype(np.complex64)
    roi = (np.abs(maps) > 0).any(0)
    scan = MRIScan(torch.from_numpy(ksp), sens_maps=torch.from_numpy(maps), target=torch.from_numpy(ref))
    return scan, ref, roi, ksp, maps


@pytest.fixture
def brain(shared_data):
    return _load(str(shared_data(KSP)), str(shared_data(IMG)))


def _score(image, ref, roi, label: str) -> dict:
    x = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
    a = evaluate(x, ref, roi=roi, scale=True)
    b = evaluate(x, ref, scale=True)
    print(
        f"\n[brain8ch] {label}: ROI psnr {a['psnr']:.2f} dB ssim {a['ssim']:.4f} nrmse {a['nrmse']:.4f} | "
        f"whole psnr {b['psnr']:.2f} dB ssim {b['ssim']:.4f} nrmse {b['nrmse']:.4f}"
    )
    return a


def test_data_layout(brain):
    scan, ref, roi, *_ = brain
    assert scan.kspace.shape == (8, 180, 230) and ref.shape == (180, 230)
    assert 0.12 < float(scan.mask.float().mean()) < 0.135  # 12.7 % of k-space acquired
    assert 0.6 < roi.mean() < 0.9


def test_cgsense_holdout(brain):
    scan, ref, roi, *_ = brain
    zf = _score(run_method("zf", scan).image, ref, roi, "zero-filled")
    res = run_method("cgsense", scan)  # iters="auto": k-space hold-out, no reference
    m = _score(res.image, ref, roi, f"CG-SENSE hold-out ({res.info['iters_chosen']} iterations)")
    assert 6 <= res.info["iters_chosen"] <= 16
    assert m["psnr"] > 31.5 and m["ssim"] > 0.82 and m["nrmse"] < 0.09
    assert m["psnr"] > zf["psnr"] + 7


def test_l1wavelet_holdout(brain):
    scan, ref, roi, *_ = brain
    cfg = {"lam": "auto", "lam_candidates": (1e-4, 3e-4, 1e-3), "refine": False}
    res = run_method("l1wavelet", scan, cfg)
    m = _score(res.image, ref, roi, f"L1-wavelet hold-out (lam {res.info['lam']:g}, 3 candidates)")
    assert res.info["lam"] == 3e-4
    assert m["psnr"] > 33.7 and m["ssim"] > 0.92 and m["nrmse"] < 0.068


def test_l1wavelet_matches_sigpy(brain):
    scan, ref, roi, ksp, maps = brain
    mr = pytest.importorskip("sigpy.mri")
    ours = run_method("l1wavelet", scan, {"lam": 3e-4, "iters": 100})
    lam_abs = ours.info["lam_abs"]  # the same objective in the data's own units
    theirs = mr.app.L1WaveletRecon(ksp, maps, lam_abs, wave_name="db4", max_iter=100, show_pbar=False).run()
    a = _score(ours.image, ref, roi, f"L1-wavelet ours (lam_abs {lam_abs:.3g})")
    b = _score(theirs, ref, roi, "L1-wavelet sigpy (same lam_abs, db4, 100 iterations)")
    assert abs(a["psnr"] - b["psnr"]) < 0.5
    x = ours.image.numpy()
    diff = np.linalg.norm((x - theirs)[roi]) / np.linalg.norm(theirs[roi])
    print(f"[brain8ch] ours vs sigpy relative difference in ROI: {diff:.4f}")
    assert diff < 0.05


@pytest.mark.slow
def test_full_holdout_vs_oracle(brain):
    """Full default candidate grids chosen by hold-out, against reference-tuned (oracle) weights."""
    scan, ref, roi, *_ = brain
    rows = {}
    for name in ("l1wavelet", "tv"):
        res = run_method(name, scan, {"lam": "auto"})
        rows[name] = _score(res.image, ref, roi, f"{name} hold-out, default grid (lam {res.info['lam']:.3g})")
    cg_oracle = max(
        (_score(run_method("cgsense", scan, {"iters": k}).image, ref, roi, f"CG-SENSE {k} it")["psnr"], k)
        for k in range(3, 13)
    )
    l1_oracle = max(
        (_score(run_method("l1wavelet", scan, {"lam": v}).image, ref, roi, f"L1 lam {v:g}")["psnr"], v)
        for v in (1e-4, 2e-4, 3e-4, 5e-4, 1e-3)
    )
    tv_oracle = max(
        (_score(run_method("tv", scan, {"lam": v}).image, ref, roi, f"TV lam {v:g}")["psnr"], v)
        for v in (5e-4, 1e-3, 2e-3, 3e-3)
    )
    print(f"[brain8ch] oracle CG {cg_oracle}, L1 {l1_oracle}, TV {tv_oracle}")
    assert rows["l1wavelet"]["psnr"] > l1_oracle[0] - 0.5
    assert rows["tv"]["psnr"] > tv_oracle[0] - 0.8
    assert cg_oracle[0] > 33.0
