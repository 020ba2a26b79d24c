"""The demo and the bench framework run end to end on tiny profiles and write their reports."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from inrecon.errors import InreconError
from inrecon.experiments.bench import available_experiments, load_experiment, run_bench
from inrecon.experiments.demo import PROFILES, run_demo

TINY = dataclasses.replace(
    PROFILES["quick"],
    mri_shape=(32, 32),
    coils=4,
    acs=8,
    ct_shape=(32, 32),
    views=20,
    n_pretrain=3,
    n_test=1,
    inr_steps=30,
    patience=10,
    pretrain_steps=20,
    subjects_per_step=2,
    hash_levels=6,
    log2_table=10,
)


def test_demo_tiny_profile_writes_report_and_tables(tmp_path):
    lines = []
    out = run_demo(out_dir=tmp_path, device="cpu", show_progress=False, log=lines.append, profile=TINY)
    assert set(out["tables"]) == {"mri", "ct"}
    methods = {row["method"] for row in out["tables"]["mri"]}
    assert {"zero-filled", "CG-SENSE", "NGP", "DisINR"} <= methods
    assert (tmp_path / "report.html").exists() and (tmp_path / "report.md").exists()
    assert json.loads((tmp_path / "results_ct.json").read_text())["rows"]
    assert any("PSNR" in ln for ln in lines)
    # DisINR is pre-trained at the profile's width (quick: 64 units instead of the paper's 128)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "models" / "disinr_mri.safetensors"), "pt") as f:
        arch = json.loads(f.metadata()["inrecon"])["architecture"]
    assert arch["encoder_width"] == arch["decoder_width"] == TINY.disinr_width == 64
    assert PROFILES["quick"].disinr_width == 64 and PROFILES["full"].disinr_width == 128


def test_quick_demo_fits_ct_on_the_scans_grid_and_the_full_one_on_the_default():
    from inrecon.experiments.demo import _methods

    models = {"disinr": Path("m.safetensors")}
    for name, grid in (("quick", 1), ("full", "auto")):
        runs = {r.label: r for r in _methods("ct", PROFILES[name], models)}
        assert runs["NGP"].overrides["data.ct_supersample"] == grid, name
        assert runs["DisINR"].overrides["data.ct_supersample"] == grid, name
        mri = {r.label: r for r in _methods("mri", PROFILES[name], models)}
        assert "data.ct_supersample" not in mri["NGP"].overrides


def test_every_bundled_experiment_has_a_driver_and_quick_profile():
    from inrecon.experiments.drivers import DRIVERS

    exps = available_experiments()
    assert {
        "ct_sparse_view",
        "mri_undersampled",
        "volume_fitting",
        "ablation_freezing",
        "backbones",
        "pretrain_size",
        "feature_pca",
    } <= set(exps)
    for name in exps:
        raw = json.loads((resources.files("inrecon") / "configs" / "bench" / f"{name}.json").read_text())
        e = load_experiment(name, quick=True)
        assert e.kind in DRIVERS, name
        assert e.quick and raw["params"] and raw["quick"] and exps[name] == e.description


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("name", sorted(available_experiments()))
def test_every_bundled_config_validates_into_its_typed_config(name, quick):
    from inrecon.config import config_from_dict, config_to_dict, validate_config
    from inrecon.experiments.drivers import DRIVERS

    e = load_experiment(name, quick=quick)
    cls = DRIVERS[e.kind][0]
    assert type(e.config) is cls and e.name == name
    validate_config(e.config)
    for f in dataclasses.fields(cls):  # every list of sub-configs holds typed entries, not dicts
        value = getattr(e.config, f.name)
        if isinstance(value, tuple):
            assert not any(isinstance(v, dict) for v in value), f.name
    again = config_from_dict(cls, config_to_dict(e.config))  # the report's snapshot reads back the same
    assert config_to_dict(again) == config_to_dict(e.config)
    if e.kind in ("ct_sparse_view", "ablation_freezing") and e.config.ct_object_grid == "native":
        # lungdx is projected from its native grid, a whole multiple of the reconstruction grid: a profile
        # whose size does not divide it stops at once (the quick profiles' 96 did, 2026-12-04)
        from inrecon.data.shared import LUNGDX_NATIVE

        assert LUNGDX_NATIVE % e.config.size == 0, e.config.size


def test_unknown_set_key_is_refused_before_any_work(tmp_path, capsys):
    from inrecon.cli import main

    out = tmp_path / "bench"
    with pytest.raises(InreconError, match="nosuchkey"):
        run_bench("ct_sparse_view", quick=True, out_dir=out, log=lambda *_: None, overrides={"nosuchkey": 3})
    assert not out.exists()
    rc = main(["bench", "ct_sparse_view", "--quick", "--set", "nosuchkey=3", "-o", str(out), "--no-progress"])
    assert rc == 2 and "nosuchkey" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(InreconError, match="views"):  # a bad value too
        load_experiment("ct_sparse_view", quick=True, overrides={"views": [0]})


def test_unknown_experiment_is_refused():
    with pytest.raises(InreconError, match="unknown bench experiment"):
        load_experiment("table99")


TINY_CT = {
    "size": 32,
    "n_pretrain": 2,
    "n_test": 1,
    "pretrain_steps": 5,
    "inr_steps": 10,
    "patience": 5,
    "real": False,
    "methods": ["fbp", "ngp", "disinr"],
    "arch": {"n_levels": 4, "log2_table_size": 8},
}
"""A ct_sparse_view profile that runs in seconds (phantoms, a few steps)."""


@pytest.mark.parametrize(
    "name,over",
    [
        ("ct_sparse_view", TINY_CT),
        (
            "feature_pca",
            {
                "size": 32,
                "coils": 2,
                "n_pretrain": 2,
                "pretrain_steps": 5,
                "n_show": 2,
                "arch": {"n_levels": 4, "log2_table_size": 8},
            },
        ),
    ],
)
def test_bench_drivers_run_tiny(tmp_path, name, over):
    path = run_bench(
        name, quick=True, out_dir=tmp_path, show_progress=False, log=lambda *_: None, overrides=over
    )
    assert path.exists() and (path.parent / "report.json").exists()
    if name == "ct_sparse_view":  # noise-free and noisy (1e5 photons per ray) settings, each pre-trained
        md = (path.parent / "report.md").read_text()
        assert (
            "| 60 views, 100000 photons/ray in-domain | DisINR |" in md
            and "| 60 views in-domain | DisINR |" in md
        )
        models = {p.name for p in (path.parent / "models").glob("*.safetensors")}
        assert models == {"disinr_ct60.safetensors", "disinr_ct60_p100000.safetensors"}


def test_mri_bench_scores_the_real_brain_with_a_model_pretrained_on_its_grid(tmp_path):
    from inrecon.data import shared

    if not shared.available(shared.BRAIN8CH):
        pytest.skip(f"real data absent: {shared.BRAIN8CH} not under INRECON_DATA")
    over = {
        "size": 32,
        "coils": 2,
        "acs": 6,
        "afs": [4],
        "n_pretrain": 1,
        "n_test": 1,
        "pretrain_steps": 3,
        "inr_steps": 4,
        "patience": 2,
        "unseen_patterns": [],
        "real": False,
        "methods": ["zf"],
        "real_brain": {"n_pretrain": 1, "methods": ["zf", "disinr"]},
        "arch": {"n_levels": 4, "log2_table_size": 8},
    }
    path = run_bench(
        "mri_undersampled",
        quick=True,
        out_dir=tmp_path,
        show_progress=False,
        log=lambda *_: None,
        overrides=over,
    )
    report = json.loads((path.parent / "report.json").read_text())
    section = next(s for s in report["sections"] if s["name"].startswith("Real 8-coil brain"))
    methods = {row["method"] for row in section["rows"]}
    assert methods == {"ZF", "DisINR"}
    zf = next(row for row in section["rows"] if row["method"] == "ZF")
    assert 20 < zf["psnr"]["mean"] < 30  # the real scan's zero-filled PSNR in the coil-map support (~24 dB)


def test_ct_populations_are_projected_from_a_finer_object():
    from dataclasses import replace

    from inrecon.data import shared
    from inrecon.experiments.drivers.populations import Subjects, ct_images, ct_scans

    p = Subjects(size=16, n_pretrain=1, n_test=1, real=False)
    pre, _test, _ood, note = ct_images(p, lambda *_: None)
    assert pre[0].shape == (64, 64) and "4x finer" in note
    scan = ct_scans(pre, 12, size=16)[0]
    assert scan.image_shape == (16, 16) and scan.provenance["rays_per_detector"] == 4
    block = torch.as_tensor(pre[0]).reshape(16, 4, 16, 4).mean((1, 3))
    torch.testing.assert_close(scan.target, block)
    same = ct_images(replace(p, ct_object_grid="same"), lambda *_: None)[0]
    assert same[0].shape == (16, 16) and ct_scans(same, 12)[0].provenance["rays_per_detector"] == 1
    if shared.available(shared.LUNGDX_A0001) and shared.available(shared.LUNGDX_A0002):
        with pytest.raises(InreconError, match="does not divide"):
            ct_images(Subjects(size=100), lambda *_: None)


def test_mri_pretrain_images_are_phantoms_or_a_checked_stack(tmp_path):
    import numpy as np

    from inrecon.data.phantoms import brain_phantom
    from inrecon.experiments.drivers.populations import mri_pretrain_images

    phantoms = mri_pretrain_images((16, 20), 2)
    assert len(phantoms) == 2 and np.array_equal(phantoms[1], brain_phantom((16, 20), seed=1, contrast="t2"))
    stack = np.random.default_rng(0).random((3, 16, 20)).astype(np.float32)
    np.save(tmp_path / "ok.npy", stack)
    images = mri_pretrain_images((16, 20), 5, tmp_path / "ok.npy")
    assert len(images) == 3 and images[0].dtype == np.float64 and np.allclose(images[2], stack[2])
    np.save(tmp_path / "wrong.npy", stack[:, :, :16])
    with pytest.raises(InreconError, match=r"not \(N, 16, 20\)"):
        mri_pretrain_images((16, 20), 5, tmp_path / "wrong.npy")
    stack[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", stack)
    with pytest.raises(InreconError, match="NaN"):
        mri_pretrain_images((16, 20), 5, tmp_path / "nan.npy")


def test_comparison_results_keep_the_hold_outs_score_tables_and_drop_other_structures():
    from inrecon.experiments.runner import _summary_info

    info = {
        "prior_scores": {0.0: 5.1e-4, 0.003: 4.9e-4},
        "candidate_scores": {"frozen": 1.0, "unfrozen": None},
        "prior_tv": 0.001,
        "image_stats": {"shape": [4, 4]},  # not a score table: dropped as before
        "history": {"step": [0, 1], "lr": [1e-2, 1e-2]},
    }
    kept = _summary_info(info)
    assert kept["prior_scores"] == {"0.0": 5.1e-4, "0.003": 4.9e-4}  # JSON keys
    assert kept["candidate_scores"] == {"frozen": 1.0, "unfrozen": None}
    assert kept["prior_tv"] == 0.001 and "image_stats" not in kept
    assert kept["history"] == {"step": [0, 1]}
    json.dumps(kept)


def test_comparison_in_worker_processes_matches_the_one_in_this_process():
    from inrecon.data.phantoms import brain_phantom
    from inrecon.data.sampling import cartesian_1d
    from inrecon.experiments.runner import MethodRun, run_comparison
    from inrecon.parallel import Runner
    from inrecon.physics.simulate.mri import simulate_mri

    scans = [
        (
            f"s{s}",
            simulate_mri(
                brain_phantom((24, 24), seed=s), n_coils=2, mask=cartesian_1d((24, 24), 2, acs=6), seed=s
            ),
        )
        for s in (0, 1)
    ]
    runs = [MethodRun("zero-filled", "zf"), MethodRun("CG-SENSE", "cgsense")]
    here = run_comparison(scans, runs, show_progress=False, log=None)
    lines = []
    with Runner(2) as runner:
        assert runner.backend == "processes"
        there = run_comparison(scans, runs, show_progress=False, log=lines.append, runner=runner)
        # results in the serial order whatever order the workers finish in; the same numbers
        assert [(r.case, r.label) for r in there.results] == [(r.case, r.label) for r in here.results]
        for a, b in zip(here.results, there.results):
            assert a.metrics["psnr"] == pytest.approx(b.metrics["psnr"], abs=1e-6)
            assert np.allclose(a.image, b.image, atol=1e-6)
        assert len(lines) == 4 and all("PSNR" in ln for ln in lines)
        # the scans went to the workers as copies: not moved into shared memory under the caller's feet (which
        # freed the buffer a reference image viewed), and the references are the targets' values
        assert not any(scan.target.is_shared() for _, scan in scans)
        for name, scan in scans:
            assert np.array_equal(there.references[name], scan.target.numpy())
        # a method failing in a worker names itself and the case, and how to see the traceback
        with pytest.raises(InreconError, match=r"broken on s0 failed in a worker process.*nosuchkey"):
            run_comparison(
                scans[:1], [MethodRun("broken", "zf", {"nosuchkey": 1})] * 2, log=None, runner=runner
            )


def test_demo_reconstructs_in_one_worker_per_core_on_a_cpu_and_in_this_process_on_a_gpu(
    monkeypatch, tmp_path
):
    from inrecon.cli import main
    from inrecon.experiments import demo

    monkeypatch.setattr(demo, "available_cores", lambda: 16)
    assert demo.demo_jobs(torch.device("cpu")) == 4
    monkeypatch.setattr(demo, "available_cores", lambda: 1)
    assert demo.demo_jobs(torch.device("cpu")) == 1
    assert demo.demo_jobs(torch.device("cuda")) == 1
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--jobs", "0", "-o", str(out)]) == 2
    assert not out.exists()


def test_a_bench_in_worker_processes_gives_the_same_tables(tmp_path):
    over = {**TINY_CT, "photons": [0]}
    rows = {}
    for jobs in (1, 2):
        path = run_bench(
            "ct_sparse_view",
            quick=True,
            out_dir=tmp_path / f"jobs{jobs}",
            show_progress=False,
            log=lambda *_: None,
            overrides={**over, "jobs": jobs},
        )
        report = json.loads((path.parent / "report.json").read_text())
        summary = next(s for s in report["sections"] if s["name"].startswith("Summary"))
        rows[jobs] = {(r["setting"], r["method"]): r["psnr"]["mean"] for r in summary["rows"]}
    assert len(rows[1]) == 6 and rows[2].keys() == rows[1].keys()  # in and out of domain x three methods
    for key, psnr in rows[1].items():
        assert rows[2][key] == pytest.approx(psnr, abs=0.05), key  # thread counts differ: summation order
    with pytest.raises(InreconError, match="jobs"):
        load_experiment("ct_sparse_view", quick=True, overrides={"jobs": 0})


def _two_scans():
    from inrecon.data.phantoms import brain_phantom
    from inrecon.data.sampling import cartesian_1d
    from inrecon.physics.simulate.mri import simulate_mri

    return [
        (
            f"s{s}",
            simulate_mri(
                brain_phantom((24, 24), seed=s), n_coils=2, mask=cartesian_1d((24, 24), 2, acs=6), seed=s
            ),
        )
        for s in (0, 1)
    ]


class _Killed(Exception):
    pass


def test_a_comparison_with_a_store_reads_back_what_an_earlier_run_finished(tmp_path, monkeypatch):
    from inrecon.experiments import runner as runner_module
    from inrecon.experiments.runner import MethodRun, run_comparison

    scans = _two_scans()
    runs = [MethodRun("zero-filled", "zf"), MethodRun("CG-SENSE", "cgsense", {"max_iters": 5})]
    real = runner_module._reconstruct
    calls, dying = [], [True]

    def counted(case, scan, run):
        calls.append((case, run.label))
        if dying[0] and (case, run.label) == ("s1", "CG-SENSE"):
            raise _Killed  # the first run dies in its last pair
        return real(case, scan, run)

    monkeypatch.setattr(runner_module, "_reconstruct", counted)
    store = tmp_path / "pairs"
    with pytest.raises(_Killed):
        run_comparison(scans, runs, show_progress=False, log=None, store=store)
    dying[0] = False
    assert len(list(store.glob("*.json"))) == 3  # the three finished pairs are kept
    lines = []
    again = run_comparison(scans, runs, show_progress=False, log=lines.append, store=store)
    assert calls[4:] == [("s1", "CG-SENSE")]  # only the missing pair ran
    assert "3 of 4 reconstructions read back" in lines[0]
    fresh = run_comparison(scans, runs, show_progress=False, log=None)
    assert [(r.case, r.label) for r in again.results] == [(r.case, r.label) for r in fresh.results]
    for a, b in zip(again.results, fresh.results):
        assert a.metrics == pytest.approx(b.metrics) and np.array_equal(a.image, b.image)
        assert a.info.get("iterations") == b.info.get("iterations")
    # a changed setting is another key: that method's pairs run again, the other's are read back
    calls.clear()
    runs2 = [runs[0], MethodRun("CG-SENSE", "cgsense", {"max_iters": 6})]
    run_comparison(scans, runs2, show_progress=False, log=None, store=store)
    assert calls == [("s0", "CG-SENSE"), ("s1", "CG-SENSE")]
    # and another scan under the same case name is not mistaken for the stored one
    calls.clear()
    run_comparison([("s0", scans[1][1])], runs[:1], show_progress=False, log=None, store=store)
    assert calls == [] and len(list(store.glob("*.json"))) == 6  # s1's stored pair, under its own data's key
    run_comparison(
        [("s0", scans[0][1].to("cpu"))], [MethodRun("ZF", "zf")], show_progress=False, log=None, store=store
    )
    assert calls == [("s0", "ZF")]  # another label is another column


def test_a_bench_started_again_reads_back_its_models_and_reconstructions(tmp_path):
    over = {**TINY_CT, "photons": [0]}
    logs = []

    def bench(**extra):
        logs.clear()
        path = run_bench(
            "ct_sparse_view",
            quick=True,
            out_dir=tmp_path,
            show_progress=False,
            log=logs.append,
            overrides={**over, **extra},
        )
        return json.loads((path.parent / "report.json").read_text()), path.parent

    # a killed pre-training of the same model with other settings: its checkpoint is not resumed, but removed
    stale = tmp_path / "ct_sparse_view" / "models" / ".checkpoints" / "disinr_ct60-0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "disinr_pretrain.rank0.pt").write_bytes(b"another run's")
    first, folder = bench()
    assert (folder / "models" / "disinr_ct60.key.json").exists()
    assert not (folder / "models" / ".checkpoints").exists()  # removed once the model was written
    second, _ = bench()
    text = "\n".join(logs)
    assert "disinr_ct60.safetensors: read back" in text
    assert text.count("3 of 3 reconstructions read back") == 2  # in and out of domain
    assert len(_summary(first)) == 6 and _summary(first) == _summary(second)
    stored = sorted(p.name for p in (folder / "pairs").iterdir())
    third, _ = bench(resume=False)
    assert "read back" not in "\n".join(logs) and _summary(third) == _summary(first)
    assert sorted(p.name for p in (folder / "pairs").iterdir()) == stored  # written again, none lost


def _summary(report: dict) -> dict:
    section = next(s for s in report["sections"] if s["name"].startswith("Summary"))
    return {(r["setting"], r["method"]): r["psnr"]["mean"] for r in section["rows"]}
