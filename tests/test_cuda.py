"""Every registered method, pre-training and the command line on a CUDA device: the result lives where the
scan does, is finite, and is as good as the same run on the CPU (classical methods to 0.1 dB, INR methods,
whose hash-table gradients accumulate in another order on a GPU, to 1.5 dB).

Marked ``gpu`` (out of the default run; CI has no GPU): ``python -m pytest -m gpu tests/test_cuda.py``.
``INRECON_TEST_DEVICE=cpu`` runs the module with the CPU standing in for the GPU (a check of the test itself).
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch

from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import radial_trajectory
from inrecon.data.scans import VolumeScan
from inrecon.engine.callbacks import HoldOut
from inrecon.engine.trainer import OptimConfig, StepOutput, Task, train
from inrecon.metrics import psnr
from inrecon.physics.measurement import resolve_ct_supersample
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
    # the same grid on both devices (a CT scan's "auto" grid is 2x finer on a GPU: tested below)
    "disinr": {"steps": 60, "stop": "none", "data.ct_supersample": 1},
    "strainer": {"steps": 60, "stop": "none"},
    "meta": {"steps": 60, "stop": "none"},
    # a classical method whose full noise-level search takes minutes on a CPU: two levels, 10 iterations
    "pnp-ct": {"lam_candidates": (0.022, 0.045), "iters": 10},
}
INR_METHODS = set(BUDGETS) - {"pnp-ct"}
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


# --- CUDA graphs: the fits' steps replayed from a recording (monitor.cuda_graph, on by default) ---

needs_cuda_graphs = pytest.mark.skipif(
    not DEVICE.startswith("cuda"), reason="CUDA graphs need a CUDA device (no CPU stand-in)"
)


class _Regression(Task):
    """A least-squares fit of a linear layer with two Adam groups (the bias at a tenth of the rate);
    ``host_sync`` reads the loss back inside the step, which no CUDA graph can record."""

    capturable = True

    def __init__(self, host_sync: bool = False):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 16, generator=g).to(DEVICE)
        self.y = torch.randn(256, 4, generator=g).to(DEVICE)
        torch.manual_seed(0)
        self.module = torch.nn.Linear(16, 4).to(DEVICE)
        self.host_sync = host_sync

    def param_groups(self):
        return [{"params": [self.module.weight]}, {"params": [self.module.bias], "lr": 1e-3}]

    def step(self, step):
        pred = self.module(self.x)
        loss = ((pred - self.y) ** 2).mean()
        if self.host_sync:
            float(loss.detach())
        return StepOutput(loss, pred=pred)


def _train_regression(graph: bool, cfg: OptimConfig, host_sync: bool = False):
    task = _Regression(host_sync)
    hold = HoldOut(torch.arange(0, 256, 4, device=DEVICE), task.y)
    run = train(task, cfg, [hold], cuda_graph=graph, sync_every=7)
    return run, [p.detach().clone() for p in task.module.parameters()]


@needs_cuda_graphs
@pytest.mark.parametrize("schedule", ["step", "linear"])
def test_cuda_graph_steps_are_the_eager_steps(schedule):
    """Replayed steps compute what eager steps compute: the weights, the logged losses and the callbacks'
    held-out losses, with a learning rate that changes during the run (both schedules, two groups)."""
    cfg = OptimConfig(steps=60, lr=1e-2, schedule=schedule, lr_decay_every=20, decay_start=0.5)
    (eager, w_eager), (graphed, w_graph) = (_train_regression(g, cfg) for g in (False, True))
    assert graphed.graphed and not eager.graphed
    for a, b in zip(w_eager, w_graph):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for key in ("loss", "val_loss"):
        assert graphed.history[key] == pytest.approx(eager.history[key], rel=1e-5), key
    assert graphed.history["val_step"] == list(range(60))


@needs_cuda_graphs
def test_a_step_that_cannot_be_recorded_runs_eagerly_with_a_warning():
    cfg = OptimConfig(steps=12, lr=1e-2)
    with pytest.warns(RuntimeWarning, match="could not be recorded as a CUDA graph"):
        fallback, w = _train_regression(True, cfg, host_sync=True)
    _, w_eager = _train_regression(False, cfg, host_sync=True)
    assert not fallback.graphed and fallback.step == 12
    for a, b in zip(w_eager, w):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@needs_cuda_graphs
@pytest.mark.parametrize("case", ["mri", "ct"])
def test_ngp_fits_replay_cuda_graphs_as_well_as_eager_steps(case):
    """The library's own fit (hold-out stage, refit) replays graphs by default and ends where the eager fit
    does (hash-table gradients are summed in another order between runs on a GPU: close, not identical)."""
    scan = SCANS[case].to(DEVICE)
    over = {**INR, "steps": 120, "stop": "holdout"}
    res = {}
    for graph in (True, False):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager steps fails the test
            res[graph] = run_method("ngp", scan, {**over, "monitor.cuda_graph": graph}, show_progress=False)
    assert res[True].info["cuda_graph"] and not res[False].info["cuda_graph"]
    a, b = (_score(res[g].image, scan.target) for g in (False, True))
    assert abs(a - b) < 0.5, f"eager {a:.2f} dB, graphed {b:.2f} dB"


@needs_cuda_graphs
def test_ngp_models_ct_on_a_finer_grid_on_a_gpu():
    """NGP's CT default ``data.ct_supersample="auto"`` is 2 on a GPU whatever the scan's size (on the CPU only
    up to 128 x 128 pixels: tests/physics/test_measurement.py)."""
    scan = SCANS["ct"]
    res = {dev: run_method("ngp", scan.to(dev), INR, show_progress=False) for dev in (DEVICE, "cpu")}
    cpu = resolve_ct_supersample("auto", scan.to("cpu"))
    assert res[DEVICE].info["supersample"] == 2 and res["cpu"].info["supersample"] == cpu
    assert tuple(res[DEVICE].image.shape) == tuple(res["cpu"].image.shape) == tuple(scan.target.shape)


def test_disinr_models_ct_on_a_finer_grid_on_a_gpu(models):
    """DisINR's CT adaptation takes NGP's ``data.ct_supersample="auto"``: 2 on a GPU, on the CPU by the scan's
    size."""
    scan, model, devices = SCANS["ct"], models("disinr", "ct"), (DEVICE, "cpu")
    over = {"steps": 20, "stop": "none"}
    res = {d: run_method("disinr", scan.to(d), over, model=model, show_progress=False) for d in devices}
    cpu = resolve_ct_supersample("auto", scan.to("cpu"))
    assert res[DEVICE].info["supersample"] == 2 and res["cpu"].info["supersample"] == cpu
    assert tuple(res[DEVICE].image.shape) == tuple(res["cpu"].image.shape) == tuple(scan.target.shape)


@needs_cuda_graphs
def test_gathered_hash_lookup_fits_as_the_sparse_one_on_a_gpu():
    """``net.hash.lookup="gather"`` (a gather and an ``index_add_`` instead of cuSPARSE products) records into
    CUDA graphs and reaches the sparse plan's image."""
    scan = SCANS["mri"].to(DEVICE)
    res = {
        how: run_method("ngp", scan, {**INR, "net.hash.lookup": how}, show_progress=False)
        for how in ("sparse", "gather")
    }
    assert res["gather"].info["cuda_graph"]
    a, b = (_score(res[h].image, scan.target) for h in ("sparse", "gather"))
    assert abs(a - b) < 0.5, f"sparse {a:.2f} dB, gather {b:.2f} dB"
