"""Run many methods on many test cases and collect what a report needs.

A comparison is a list of test cases (name, scan with a reference) and a list of :class:`MethodRun` (a
registered method with config overrides, and for population methods the pre-trained model to use). Every
method sees exactly the same scans; metrics follow :func:`inrecon.metrics.evaluate` (magnitude, least-squares
scaling for MRI, the scan's ROI when it has one). Results: one row per (case, method) with PSNR / SSIM / NRMSE,
wall time, steps, parameter counts and the training history; the images are kept for figures.

Given a ``store`` folder, every finished (case, method) pair is written there as it finishes (``KEY.npz`` with
the image, then ``KEY.json`` with the rest, each atomically), and a comparison started again reads back the pairs
whose key matches instead of reconstructing them: a bench killed after hours loses only the fits that were
running. The key (:func:`pair_key`) hashes what determines the result: the scan's data and reference, the method,
its resolved settings (a changed default reruns the pair), the pre-trained model's weights and the library
versions.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inrecon import __version__
from inrecon.config import config_to_dict
from inrecon.data.atomic import atomic_path, write_json
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.errors import InreconError
from inrecon.metrics import evaluate
from inrecon.parallel import Runner
from inrecon.progress import progress
from inrecon.recon.api import run_method
from inrecon.recon.methods import METHODS
from inrecon.tuning.hparams import scan_identity, update_digest

__all__ = ["CaseResult", "Comparison", "MethodRun", "pair_key", "run_comparison"]


@dataclass
class MethodRun:
    """One column of a comparison: ``label`` shown in tables, ``method`` registered name, ``overrides`` config."""

    label: str
    method: str
    overrides: dict = field(default_factory=dict)
    model: str | None = None


@dataclass
class CaseResult:
    case: str
    label: str
    metrics: dict
    seconds: float
    info: dict
    image: np.ndarray

    def line(self) -> str:
        """One line for the log: case, method, PSNR, SSIM and seconds."""
        return (
            f"  {self.case:>14s} {self.label:>12s}: PSNR {self.metrics['psnr']:6.2f} dB  "
            f"SSIM {self.metrics['ssim']:.4f}  {self.seconds:7.1f} s"
        )


@dataclass
class Comparison:
    results: list[CaseResult] = field(default_factory=list)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    rois: dict[str, np.ndarray | None] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """Per-case rows for :func:`inrecon.report.aggregate` (no arrays)."""
        out = []
        for r in self.results:
            row = {
                "case": r.case,
                "method": r.label,
                **{k: float(v) for k, v in r.metrics.items()},
                "seconds": r.seconds,
            }
            for k in ("chosen_steps", "steps_run", "n_parameters", "n_parameters_trainable"):
                if k in r.info:
                    row[k] = r.info[k]
            out.append(row)
        return out

    def curves(self, case: str, key: str = "psnr") -> dict[str, tuple[list, list]]:
        """Training curves (step, metric) of the INR methods on ``case`` (the final fit's history)."""
        out = {}
        for r in self.results:
            h = r.info.get("history") or {}
            if r.case == case and key in h and h.get("eval_step"):
                out[r.label] = (list(h["eval_step"]), list(h[key]))
        return out

    def images(self, case: str) -> dict[str, np.ndarray]:
        return {r.label: r.image for r in self.results if r.case == case}

    def metrics_for(self, case: str) -> dict[str, dict]:
        return {r.label: r.metrics for r in self.results if r.case == case}


def _summary_info(info: dict) -> dict:
    keep = {}
    for k, v in info.items():
        if k == "history":
            keep[k] = {kk: vv for kk, vv in v.items() if kk in ("eval_step", "psnr", "ssim", "step", "loss")}
        elif k == "holdout":
            keep[k] = {kk: vv for kk, vv in v.items() if kk != "history"}
        elif isinstance(v, int | float | str | bool) or v is None:
            keep[k] = v
        elif isinstance(v, dict) and all(isinstance(s, int | float) or s is None for s in v.values()):
            keep[k] = {str(kk): vv for kk, vv in v.items()}  # a score table: prior_scores, candidate_scores
    return keep


def _reconstruct(case_name: str, scan, run: MethodRun) -> CaseResult:
    """One method on one case, scored as every table scores it (module docstring)."""
    extra = {"model": run.model} if run.model else {}
    t0 = time.perf_counter()
    res = run_method(run.method, scan, run.overrides, show_progress=False, **extra)
    seconds = time.perf_counter() - t0
    img = res.image.detach().cpu()
    target = scan.target.detach().cpu()
    m = evaluate(img, target, roi=None if scan.roi is None else scan.roi.cpu(), scale=scan.modality == "mri")
    image = img.abs().numpy() if img.is_complex() else img.numpy()
    if scan.modality == "mri":  # show the least-squares scaled magnitude, as scored
        ref = target.numpy()
        denom = float((image * image).sum()) or 1.0
        image = image * float((image * ref).sum()) / denom
    return CaseResult(case_name, run.label, m, seconds, _summary_info(res.info), image)


def _reconstruct_job(_context, job: tuple) -> CaseResult:
    """:func:`_reconstruct` in a worker process of :class:`inrecon.parallel.Runner`."""
    return _reconstruct(*job)


def _model_digest(path: str | Path) -> str:
    """A short hash of a pre-trained model's weights (a safetensors file's tensors, not its metadata, which
    records the pre-training's wall time; any other file's bytes)."""
    path = Path(path)
    sha = hashlib.sha256()
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            for name in sorted(f.keys()):
                sha.update(name.encode())
                update_digest(sha, f.get_tensor(name))
        return sha.hexdigest()[:16]
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def _scan_part(scan) -> dict:
    """The scan's share of a pair's key: what it measured and what it is scored against."""
    sha = hashlib.sha256()
    for x in (scan.target, scan.roi):
        update_digest(sha, x)
    return {"scan": scan_identity(scan), "reference": sha.hexdigest()[:16]}


def _method_part(run: MethodRun, modality: str) -> dict:
    """The method's share of a pair's key: its resolved settings, the model's weights, the versions."""
    import torch

    settings = METHODS.resolve(run.method, modality).build(modality, run.overrides)
    return {
        "label": run.label,
        "method": run.method,
        "settings": config_to_dict(settings),
        "model": None if run.model is None else _model_digest(run.model),
        "versions": {"inrecon": __version__, "torch": torch.__version__},
    }


def pair_key(scan, run: MethodRun) -> str:
    """The key a finished (scan, method) pair is stored under (module docstring)."""
    return config_fingerprint({**_scan_part(scan), **_method_part(run, scan.modality)})


def _save_pair(store: Path, key: str, result: CaseResult) -> None:
    with atomic_path(store / f"{key}.npz") as tmp:
        np.savez(tmp, image=result.image)
    record = {"key": key, "label": result.label, "metrics": result.metrics, "seconds": result.seconds}
    # written last: its presence marks the pair finished
    write_json(store / f"{key}.json", {**record, "info": result.info}, indent=None)


def _load_pair(store: Path, key: str, case_name: str) -> CaseResult | None:
    """The pair stored under ``key`` (as a result of ``case_name``), or ``None`` (absent or unreadable)."""
    try:
        meta = json.loads((store / f"{key}.json").read_text())
        if meta.get("key") != key:
            return None
        with np.load(store / f"{key}.npz") as arrays:
            image = arrays["image"]
        return CaseResult(case_name, meta["label"], meta["metrics"], meta["seconds"], meta["info"], image)
    except (OSError, ValueError, KeyError):
        return None


def run_comparison(
    cases: Sequence[tuple[str, object]],
    runs: Sequence[MethodRun],
    *,
    show_progress=None,
    log=print,
    runner: Runner | None = None,
    store: str | Path | None = None,
    resume: bool = True,
) -> Comparison:
    """Reconstruct every case with every method; returns a :class:`Comparison`.

    ``runner``: ``None`` (or a one-job :class:`inrecon.parallel.Runner`) reconstructs one (case, method) pair
    after another in this process; a runner with N jobs hands the pairs to its N local worker processes as they
    free up (each with ``cores // N`` torch threads: small fits use one core better than two), the pairs of
    population methods (a ``model``) first. The results are in the same order either way and log as they
    finish; per-method seconds are then those of a worker's threads. The scans must be on the CPU to go to
    worker processes. ``store``: a folder that keeps each finished pair and, with ``resume``, gives back the
    pairs an earlier run finished with the same key (module docstring; read-back pairs keep their original
    seconds); without ``resume`` every pair is reconstructed and written again."""
    comp = Comparison()
    for case_name, scan in cases:
        comp.references[case_name] = scan.target.detach().cpu().numpy()
        comp.rois[case_name] = None if scan.roi is None else scan.roi.cpu().numpy()
    jobs = [(case_name, scan, run) for case_name, scan in cases for run in runs]
    done: list[CaseResult | None] = [None] * len(jobs)
    keys: list[str] = []
    if store is not None:
        store = Path(store)
        store.mkdir(parents=True, exist_ok=True)
        # each scan and each method hashed once (a model's weights, a scan's data), then combined per pair
        scans = [_scan_part(scan) for _name, scan in cases]
        methods: dict[tuple[int, str], dict] = {}
        for _name, scan in cases:
            for r, run in enumerate(runs):
                if (r, scan.modality) not in methods:
                    methods[r, scan.modality] = _method_part(run, scan.modality)
        keys = [
            config_fingerprint({**part, **methods[r, scan.modality]})
            for part, (_name, scan) in zip(scans, cases)
            for r in range(len(runs))
        ]
        if resume:
            done = [_load_pair(store, key, name) for key, (name, _scan, _run) in zip(keys, jobs)]
        back = [r for r in done if r is not None]
        if back and log is not None:
            log(
                f"  {len(back)} of {len(jobs)} reconstructions read back from {store} (finished by an earlier run)"
            )
            for r in back:
                log(r.line())
    todo = [k for k in range(len(jobs)) if done[k] is None]
    bar = progress(total=len(todo), desc="reconstructions", show=show_progress)

    def finished(k: int, result: CaseResult) -> None:
        if store is not None:
            _save_pair(store, keys[k], result)
        done[k] = result
        if log is not None:
            log(result.line())
        if bar is not None:
            bar.update(1)

    if runner is None or runner.backend == "serial" or len(todo) < 2:
        for k in todo:
            finished(k, _reconstruct(*jobs[k]))
    else:
        off_cpu = sorted({name for name, scan in cases if scan.target.device.type != "cpu"})
        if off_cpu:
            raise InreconError(
                f"cases {off_cpu} are on a GPU; worker processes take CPU scans only",
                "reconstruct them in this process (one job) or move the scans to the CPU",
            )
        # the methods adapting a pre-trained model first (the longest fits of a comparison), so that none of
        # them starts last while the other workers sit idle; otherwise in the given order
        order = sorted(todo, key=lambda k: jobs[k][2].model is None)
        for i, result in runner.values(
            _reconstruct_job,
            [jobs[k] for k in order],
            what=lambda job: f"{job[2].label} on {job[0]}",
            fix="run with one job for the whole traceback",
        ):
            finished(order[i], result)
    if bar is not None:
        bar.close()
    comp.results = list(done)
    return comp
