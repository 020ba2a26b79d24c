"""Run many methods on many test cases and collect what a report needs.

A comparison is a list of test cases (name, scan with a reference) and a list of :class:`MethodRun` (a
registered method with config overrides, and for population methods the pre-trained model to use). Every
method sees exactly the same scans; metrics follow :func:`inrecon.metrics.evaluate` (magnitude, least-squares
scaling for MRI, the scan's ROI when it has one). Results: one row per (case, method) with PSNR / SSIM / NRMSE,
wall time, steps, parameter counts and the training history; the images are kept for figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inrecon.metrics import evaluate
from inrecon.progress import progress
from inrecon.recon.api import run_method

__all__ = ["CaseResult", "Comparison", "MethodRun", "run_comparison"]


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


def run_comparison(
    cases: Sequence[tuple[str, object]], runs: Sequence[MethodRun], *, show_progress=None, log=print
) -> Comparison:
    """Reconstruct every case with every method; returns a :class:`Comparison`."""
    comp = Comparison()
    total = len(cases) * len(runs)
    bar = progress(total=total, desc="reconstructions", show=show_progress)
    for case_name, scan in cases:
        ref = scan.target.detach().cpu().numpy()
        comp.references[case_name] = ref
        comp.rois[case_name] = None if scan.roi is None else scan.roi.cpu().numpy()
        for run in runs:
            extra = {"model": run.model} if run.model else {}
            t0 = time.perf_counter()
            res = run_method(run.method, scan, run.overrides, show_progress=False, **extra)
            seconds = time.perf_counter() - t0
            img = res.image.detach().cpu()
            m = evaluate(
                img,
                scan.target.cpu(),
                roi=None if scan.roi is None else scan.roi.cpu(),
                scale=scan.modality == "mri",
            )
            image = img.abs().numpy() if img.is_complex() else img.numpy()
            if scan.modality == "mri":  # show the least-squares scaled magnitude, as scored
                denom = float((image * image).sum()) or 1.0
                image = image * float((image * ref).sum()) / denom
            comp.results.append(CaseResult(case_name, run.label, m, seconds, _summary_info(res.info), image))
            if log is not None:
                log(comp.results[-1].line())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return comp
