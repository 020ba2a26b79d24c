"""The quality suite's CT cases: simulated from the scanner's native grid, not from the reconstruction
grid."""

from __future__ import annotations

import pytest
import torch

from inrecon.errors import InreconError
from inrecon.experiments.drivers.quality import QualityCase, build_case
from inrecon.physics.ct import CTProjector


def test_lungdx_cases_project_the_native_slice(shared_data, one_thread):
    shared_data("ct/lungdx/lungdx_A0002_B40f_8mm_hu.npz")
    from inrecon.data import shared

    case = QualityCase(name="t", source="lungdx", subject="A0002", slice=3, size=64, views=20)
    scan = build_case(case)
    assert scan.geometry.image_shape == (64, 64) and scan.sinogram.shape == (20, scan.geometry.n_detectors)
    assert scan.provenance["object_grid_factor"] == 8 and scan.provenance["rays_per_detector"] == 4
    # The reference is the slice on the reconstruction grid (the loader's area average of the native slice)
    ...
    ref = torch.as_tensor(shared.lungdx_slices("A0002", indices=[3], size=64)[0])
    assert torch.allclose(scan.target, ref, atol=1e-5)
    # ... and the data carry what no image on that grid explains: they are not its projection.
    model = CTProjector(scan.geometry, scan.angles)(scan.target)
    assert float((scan.sinogram - model).norm() / model.norm()) > 3e-3

    same = build_case(QualityCase(**{**case.__dict__, "object_grid": "same", "rays_per_detector": 1}))
    assert torch.allclose(same.sinogram, model, atol=1e-4) and same.provenance["object_grid_factor"] == 1


def test_a_size_the_native_grid_is_not_a_multiple_of_is_named():
    case = QualityCase(name="odd", source="lungdx", size=96)
    with pytest.raises(InreconError, match="does not divide the lungdx slices' native 512"):
        build_case(case)


def test_tooth_cases_keep_spread_views_and_score_against_the_others(shared_data, one_thread):
    """The real micro-CT case keeps ``views`` views spread over the scan's 181 and is scored against the
    filtered backprojection of the views it left out (noise independent of its input)."""
    shared_data("ct/tooth.h5")
    from inrecon.data import shared
    from inrecon.physics.fbp import fbp

    scan = build_case(QualityCase(name="t", source="tooth", slice=1, views=45, half="confirmation"))
    full = shared.tooth(row=1)
    kept = scan.provenance["views_kept"]
    assert scan.sinogram.shape == (45, 118) and len(kept) == 45 and kept[:3] == [0, 4, 8]
    assert torch.equal(scan.sinogram, full.sinogram[kept]) and torch.equal(scan.angles, full.angles[kept])
    rest = [v for v in range(181) if v not in kept]
    assert torch.allclose(scan.target, fbp(full.sinogram[rest], full.geometry, full.angles[rest]))
    assert scan.provenance["reference"] == "FBP of the other 136 views"
    assert scan.roi[59, 59] and scan.roi[59, 2] and not scan.roi[59, 1] and not scan.roi[0, 0]


def test_spiral_cases_keep_spread_interleaves_and_score_against_the_others(shared_data, one_thread):
    """The real spiral phantom case keeps ``views`` of the 60 interleaves on a 320 x 320 grid (its bottles
    reach beyond 256) and is scored against CG-SENSE of the interleaves it left out."""
    shared_data("mri/spiral8ch_phantom/spiral.mat")
    from inrecon.data import shared

    scan = build_case(QualityCase(name="s", source="spiral", views=15, half="confirmation"))
    full = shared.spiral_phantom()
    assert scan.image_shape == (320, 320) and scan.target.shape == (320, 320)
    assert scan.provenance["interleaves_kept"] == list(range(0, 60, 4))
    assert scan.kspace.shape == (8, 15 * 1182)
    kept = (torch.arange(full.kspace.shape[1]) % 60) % 4 == 0
    assert torch.equal(scan.kspace, full.kspace[:, kept]) and torch.equal(
        scan.trajectory, full.trajectory[kept]
    )
    assert float(scan.target.max()) == pytest.approx(1.0)
    assert scan.provenance["reference"] == "CG-SENSE of the other 45 interleaves"
    with pytest.raises(InreconError, match="2 <= views <= 30"):
        build_case(QualityCase(name="s", source="spiral", views=31))


@pytest.mark.parametrize("bad", [{"slice": 2}, {"views": 91}, {"views": 1}])
def test_a_tooth_case_the_scan_cannot_give_is_refused_before_any_work(bad):
    from inrecon.experiments.drivers.quality import QualityConfig

    with pytest.raises(InreconError, match="use slice 0 or 1 and 2 <= views <= 90"):
        QualityConfig(cases=({"name": "t", "source": "tooth", "slice": 1, "views": 45, **bad},)).check()


def test_the_suite_refuses_such_a_case_before_any_work():
    from inrecon.experiments.drivers.quality import QualityConfig

    cfg = QualityConfig(cases=({"name": "odd", "source": "lungdx", "size": 96},))
    with pytest.raises(InreconError, match="does not divide"):
        cfg.check()
    ok = QualityConfig(cases=({"name": "same", "source": "lungdx", "size": 96, "object_grid": "same"},))
    ok.check()
    assert ok.cases[0].object_grid == "same"


def test_the_suite_runs_cases_in_parallel_processes_with_the_same_numbers(
    shared_data, one_thread, tmp_path, monkeypatch
):
    """``jobs=2`` runs the cases in two spawned processes: the same table as one after another (at the same
    thread count), in the config's order, whatever order the cases start (the noise-free "b" first: longest
    first) and finish in."""
    shared_data("ct/lungdx/lungdx_A0002_B40f_8mm_hu.npz")
    import json

    import inrecon.parallel
    from inrecon.experiments.bench import run_bench

    monkeypatch.setattr(inrecon.parallel, "available_cores", lambda: 2)  # one thread per worker, as here

    tiny = {
        "source": "lungdx",
        "subject": "A0002",
        "size": 32,
        "views": 12,
        "object_grid": "same",
        "rays_per_detector": 1,
    }
    over = {
        "skip": [],  # the quick profile's skip list names the suite's own cases
        "cases": [
            {**tiny, "name": "a", "slice": 7, "photons": 1e5},
            {**tiny, "name": "b", "slice": 3, "half": "confirmation"},
        ],
        "ngp": {
            "optim": {"steps": 20},
            "stop": {"patience": 5, "min_steps": 5},
            "prior": {"tv": 0.003},
            "net": {"hash": {"n_levels": 4, "log2_table_size": 10, "base_resolution": 4}},
        },
    }
    rows = {}
    for jobs in (1, 2):
        lines: list[str] = []
        path = run_bench(
            "quality",
            quick=True,
            out_dir=tmp_path / f"jobs{jobs}",
            show_progress=False,
            log=lines.append,
            overrides={**over, "jobs": jobs},
        )
        rows[jobs] = json.loads((path.parent / "results.json").read_text())["rows"]
        assert any("2 at once" in line for line in lines) == (jobs == 2)
    assert [r["case"] for r in rows[2]] == [r["case"] for r in rows[1]] == ["a", "b"]
    for one, two in zip(rows[1], rows[2]):
        assert two["psnr"] == pytest.approx(one["psnr"], abs=1e-3)
        assert two["classical psnr"] == pytest.approx(one["classical psnr"], abs=1e-3)


def test_parallel_cases_start_longest_first():
    """The workers take the slow cases first (the order only; the table keeps the config's)."""
    from inrecon.experiments.drivers.quality import _expected_seconds

    cases = [
        QualityCase(name="dipy", source="dipy"),
        QualityCase(name="noisy", source="lungdx", photons=1e5),
        QualityCase(name="clean", source="lungdx"),
        QualityCase(name="radial", source="radial"),
    ]
    assert [c.name for c in sorted(cases, key=lambda c: -_expected_seconds(c))] == [
        "radial",
        "clean",
        "noisy",
        "dipy",
    ]


def test_the_quick_profile_skips_named_cases_and_refuses_unknown_names():
    from inrecon.experiments.bench import load_experiment

    full = load_experiment("quality").config
    quick = load_experiment("quality", quick=True).config
    assert full.skip == () and len(full.cases) == 18
    assert sorted(quick.skip) == [
        "A0001-90-clean",
        "A0001-90-noisy",
        "A0002-90-clean",
        "A0002-90-noisy",
        "spiral-15",
        "tooth-45",
        "tooth-60",
    ]
    assert {c.half for c in quick.cases if c.name not in quick.skip} == {"tuning", "confirmation"}
    with pytest.raises(InreconError, match="not cases of the suite"):
        load_experiment("quality", overrides={"skip": ["A0003-60-noisy"]})


def test_a_rerun_reads_finished_cases_back_and_reruns_changed_ones(
    shared_data, one_thread, tmp_path, monkeypatch
):
    """A suite killed part-way resumes: a case finished with the same settings is read back (the same rows and
    images, nothing reconstructed), a changed setting, ``resume=false`` or an unreadable file reruns it."""
    shared_data("ct/lungdx/lungdx_A0002_B40f_8mm_hu.npz")
    import json

    import numpy as np

    from inrecon.experiments.bench import run_bench
    from inrecon.experiments.drivers import quality

    case = {
        "name": "a",
        "source": "lungdx",
        "subject": "A0002",
        "slice": 7,
        "size": 32,
        "views": 12,
        "object_grid": "same",
        "rays_per_detector": 1,
    }
    over = {
        "skip": [],
        "jobs": 1,
        "cases": [case],
        "ngp": {
            "optim": {"steps": 20},
            "stop": {"patience": 5, "min_steps": 5},
            "prior": {"tv": 0.003},
            "net": {"hash": {"n_levels": 4, "log2_table_size": 10, "base_resolution": 4}},
        },
    }
    real = quality.run_comparison
    calls = []

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(quality, "run_comparison", counting)

    def run(**extra):
        lines: list[str] = []
        path = run_bench(
            "quality",
            quick=True,
            out_dir=tmp_path,
            show_progress=False,
            log=lines.append,
            overrides={**over, **extra},
        )
        return json.loads((path.parent / "results.json").read_text()), lines

    first, _ = run()
    stored = tmp_path / "quality" / "cases"
    assert calls == [1] and (stored / "a.json").exists() and (stored / "a.npz").exists()
    again, lines = run()
    assert calls == [1] and any("read back" in line for line in lines)
    assert again == first  # the same rows, seconds included
    with np.load(stored / "a.npz") as arrays:
        assert arrays["reference"].shape == (32, 32) and arrays["image0"].shape == (32, 32)
    run(resume=False)
    assert calls == [1, 1]
    over["ngp"]["optim"]["steps"] = 21  # another setting: another key
    run()
    assert calls == [1, 1, 1]
    (stored / "a.json").write_text("{not json")
    run()
    assert calls == [1, 1, 1, 1]
