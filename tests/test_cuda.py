"""Every registered method, pre-training and the command line on a CUDA device: the result lives where the
scan does, is finite, and is as good as the same run on the CPU (classical methods to 0.1 dB, INR methods,
whose hash-table gradients accumulate in another order on a GPU, to 1.5 dB).

Marked ``gpu`` (out of the default run; CI has no GPU): ``python -m pytest -m gpu tests/test_cuda.py``.
``INRECON_TEST_DEVICE=cpu`` runs the module with the CPU standing in for the GPU (a check of the test itself).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import radial_trajectory
from inrecon.data.scans import VolumeScan
from inrecon.metrics import psnr
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.physics.simulate.series import simulate_series
from inrecon.recon.api import pretrain, run_method
from inrecon.recon.methods import METHODS
from tests.inr_fixtures import tiny_ct, tiny_mri

DEVICE = os.environ.get("INRECON_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]

# Small INRs that learn in tens of steps at 32 x 32; the runs check devices and agreement, not final quality.
INR = {"n_levels": 8, "log2_table_size": 12, "mlp_layers": 2, "steps": 60, "stop": "none"}
POP_ARCH = {"n_levels": 6, "log2_table_size": 10, "encoder_width": 32, "decoder_width": 32}
BUDGETS = {
    "ngp": INR,
    "saxnerf": {"steps": 60, "stop": "none"},
    "imjense": {"steps": 60, "stop": "none"},
    "bilevel": {**INR, "steps": 20, "n_random": 2, "n_guided": 1, "patience": 8},
    "series": {**INR, "steps_frame": 20},
    "disinr": {"steps": 60, "stop": "none"},
    "strainer": {"steps": 60, "stop": "none"},
    "meta": {"steps": 60, "stop": "none"},
}
INR_METHODS = set(BUDGETS)
PRETRAIN = {
    "disinr": {"steps": 30, **POP_ARCH},
    "strainer": {"steps": 30},
    "meta": {"outer_steps": 5, "inner_steps": 3},
}


def _scans() -> dict[str, object]:
    radial = simulate_mri(
        brain_phantom((32, 32), seed=3), n_coils=4, trajectory=radial_trajectory(24, 64), snr_db=35, seed=0
    )
    vol = torch.tensor(np.stack([brain_phantom((16, 16), seed=s) for s in range(8)]), dtype=torch.float32)
    return {
        "mri": tiny_mri(seed=0),
        "mri-radial": radial,
        "ct": tiny_ct(photons=1e5, views=30),
        "volume": VolumeScan(volume=vol),
        "mri-series": simulate_series(3, (32, 32), af=2, n_coils=4, seed=0, acs=6),
    }


SCANS = _scans()
CASES = [
    (name, case)
    for case, scan in SCANS.items()
    for name in METHODS.for_modality(scan.modality)
    if not (case == "mri-radial" and name not in ("ngp", "cgsense", "tv", "l1wavelet", "zf"))
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny population models, pre-trained on CUDA scans, one per (method, modality)."""
    out, cache = tmp_path_factory.mktemp("models"), {}

    def get(name: str, case: str):
        if (name, case) not in cache:
            if case == "volume":
                subjects = [
                    VolumeScan(
                        volume=torch.tensor(
                            np.stack([brain_phantom((16, 16), seed=10 * s + d) for d in range(8)]),
                            dtype=torch.float32,
                        )
                    )
                    for s in (1, 2)
                ]
            elif case == "ct":
                subjects = [tiny_ct(photons=None, views=30) for _ in range(2)]
            else:
                subjects = [tiny_mri(seed=s) for s in (1, 2)]
            over = PRETRAIN[name]
            cache[name, case] = pretrain(
                name,
                [s.to(DEVICE) for s in subjects],
                out / f"{name}-{case}.safetensors",
                over,
                show_progress=False,
            )
        return cache[name, case]

    return get


def _run(name, case, scan, models):
    model = models(name, case) if METHODS.resolve(name).needs_model else None
    torch.manual_seed(0)
    return run_method(name, scan, BUDGETS.get(name), show_progress=False, model=model)


def _score(image, ref) -> float:
    return float(psnr(torch.as_tensor(image).abs().cpu().float(), torch.as_tensor(ref).abs().cpu().float()))


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_method_on_cuda_matches_cpu(name, case, models):
    scan = SCANS[case]
    gpu = _run(name, case, scan.to(DEVICE), models)
    assert torch.as_tensor(gpu.image).device.type == torch.device(DEVICE).type, (
        "the result stays on the scan's device"
    )
    assert bool(torch.isfinite(torch.as_tensor(gpu.image)).all())
    cpu = _run(name, case, scan, models)
    a, b = _score(cpu.image, scan.target), _score(gpu.image, scan.target)
    tol = 1.5 if name in INR_METHODS else 0.1
    assert math.isfinite(b) and abs(a - b) < tol, f"{name} on {case}: CPU {a:.2f} dB, CUDA {b:.2f} dB"


def test_cli_recon_on_cuda_writes_the_same_kind_of_output(tmp_path):
    import nibabel as nib

    from inrecon.cli import main
    from inrecon.data.io.hdf5 import write_scan

    path = write_scan(tmp_path / "scan.h5", SCANS["mri"])
    for dev in (DEVICE, "cpu"):
        args = ["recon", "--method", "ngp", str(path), "-o", str(tmp_path / f"{dev}.nii.gz"), "-q"]
        args += ["--device", dev, "--set", "steps=60", "--set", "stop=none", "--set", "n_levels=8"]
        assert main(args) == 0
    a, b = (np.asarray(nib.load(tmp_path / f"{d}.nii.gz").dataobj) for d in ("cpu", DEVICE))
    assert a.shape == b.shape and np.isfinite(b).all()
    # the same fit on either device: the two images agree far better than either agrees with the phantom
    assert _score(b, a) > 20.0
