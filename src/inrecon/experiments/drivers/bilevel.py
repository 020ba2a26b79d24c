"""``bilevel_tuned`` (Bilevel-INR paper Fig. 5; METHODS.md section 4): tuned vs default vs oracle.

Per scan: the scan-specific INR with the library defaults (``NGPConfig``, read at run time, hold-out stopping
rule), the bilevel-tuned INR (BO of the held-out k-space loss on the 80/20 split, no reference), the oracle (the
same trial budget, every trial scored by its best PSNR against the reference: evaluation only) and the
classical references CG-SENSE, L1-wavelet and TV with their hold-out weights. Reports the metrics, the tuned
``h``, trial counts and times, whether tuning beats the defaults by >= 1 dB and lands within 0.5 dB of the
oracle, and diagnostics for when it does not: how well the validation loss ranks the trials by PSNR, the best
PSNR any tuned trial reached, and the defaults' own peak PSNR (reference-picked stop).

The other Bilevel-paper drivers are :mod:`~inrecon.experiments.drivers.transfer` (hyperparameter transfer,
H2/H3) and :mod:`~inrecon.experiments.drivers.series` (residual learning of a real-time series, section 5.5).
Trial logs and hyperparameter files are written next to the report (``OUT/NAME/``); a re-run with the same
settings resumes finished trials from the logs (their names carry a hash of the settings and data). Scans are
typed specs (:mod:`inrecon.experiments.drivers.scans`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from inrecon.data.atomic import write_json
from inrecon.errors import InreconError
from inrecon.experiments.drivers.common import QUALITY_BEST, Log, entries, merge, set_environment
from inrecon.experiments.drivers.scans import ScanSpec, attach_maps, build_scan, scan_name
from inrecon.experiments.drivers.tuning import (
    H_NAMES,
    TuningBudget,
    default_trial,
    fmt_h,
    ngp_value,
    progress_curve,
    proxy,
    scatter_figure,
    space_check,
    trial_stats,
    tune,
)
from inrecon.experiments.runner import Comparison, MethodRun, run_comparison
from inrecon.recon.inr.ngp import NGPConfig
from inrecon.report import Report, aggregate
from inrecon.tuning.run import Tuned

__all__ = ["BilevelTunedConfig", "run_bilevel_tuned"]

_CLASSICAL = {
    "CG-SENSE": ("cgsense", {}),  # iteration count by k-space hold-out (its default)
    "L1-wavelet": ("l1wavelet", {"lam": "auto"}),
    "TV": ("tv", {"lam": "auto"}),
    "P-LORAKS": ("ploraks", {}),  # rank from the calibration data, iterations by hold-out (its defaults)
}
_LABELS = ("NGP defaults", "bilevel (tuned)", "oracle")


@dataclass
class BilevelTunedConfig(TuningBudget):
    """Bilevel Fig. 5: NGP with the defaults vs bilevel-tuned vs oracle-tuned, with classical references."""

    scans: tuple[ScanSpec, ...] = field(
        default_factory=lambda: (
            ScanSpec(name="brain8ch", kind="brain8ch"),
            ScanSpec(name="dipy-af8", image="dipy", seed=11),
        )
    )
    """The scans (objects with the keys of a scan spec: name, kind, image, shape, seed, contrast, coils, af,
    acs, snr_db, pattern, poisson_af, mask_seed, noise_seed)."""
    classical: tuple[Literal["CG-SENSE", "L1-wavelet", "TV", "P-LORAKS"], ...] = (
        "CG-SENSE",
        "L1-wavelet",
        "TV",
        "P-LORAKS",
    )
    """Classical references run with their hold-out weights."""
    default_peak: bool = True
    """Also fit the defaults on all samples for trial_steps steps and record their peak PSNR (the defaults
    with a reference-picked stop, a diagnostic)."""
    default_trial: bool = True
    """Also score the defaults as one more tuning trial (a diagnostic)."""

    def check(self) -> None:
        self.scans = entries(ScanSpec, self.scans, "scans")
        if not self.scans:
            raise InreconError("bilevel_tuned has no scans", "give at least one entry in scans")


@dataclass
class _ScanRun:
    """What one scan of ``bilevel_tuned`` produced."""

    name: str
    note: str
    comp: Comparison
    tuned: Tuned
    oracle: Tuned
    tune_s: float
    oracle_s: float
    hp_path: Path
    peak: dict | None
    dtrial: dict


def _default_peak(scan, name: str, cfg: BilevelTunedConfig, log: Log) -> dict:
    """The defaults fitted on all samples without a stop: their peak PSNR against the reference."""
    from inrecon.recon.api import run_method

    over = {
        **cfg.inr_overrides(),
        "stop.rule": "none",
        "optim.steps": cfg.trial_steps,
        "monitor.eval_every": cfg.oracle_eval_every,
    }
    t0 = time.perf_counter()
    hist = run_method("ngp", scan, over, show_progress=False).info["history"]
    pk = int(np.nanargmax(hist["psnr"])) if hist.get("psnr") else None
    peak = {
        "psnr": float(hist["psnr"][pk]) if pk is not None else None,
        "step": int(hist["eval_step"][pk]) if pk is not None else None,
        "curve": (list(hist["eval_step"]), [float(v) for v in hist["psnr"]]),
        "seconds": time.perf_counter() - t0,
    }
    log(f"  {name}: defaults on all samples peak at {peak['psnr']:.2f} dB (step {peak['step']})")
    return peak


def _run_scan(spec: ScanSpec, cfg: BilevelTunedConfig, out: Path, show_progress, log: Log) -> _ScanRun:
    """Tune, oracle-tune and compare on the scan of ``spec``."""
    name = scan_name(spec)
    scan, note = build_scan(spec)
    log(f"[{name}] {note}")
    scan = attach_maps(scan, cfg.inr.data.maps)  # one set of coil maps for every method
    tuned, tune_s, hp_path = tune(scan, cfg, out, name, False, show_progress, log)
    oracle, oracle_s, _ = tune(scan, cfg, out, name, True, show_progress, log)
    runs = [
        MethodRun(_LABELS[0], "ngp", cfg.defaults_overrides()),
        MethodRun(_LABELS[1], "ngp", dict(tuned.hparams)),
        MethodRun(_LABELS[2], "ngp", dict(oracle.hparams)),
    ]
    for label in cfg.classical:
        method, over = _CLASSICAL[label]
        runs.append(MethodRun(label, method, dict(over)))
    comp = run_comparison([(name, scan)], runs, show_progress=show_progress, log=log)
    peak = _default_peak(scan, name, cfg, log) if cfg.default_peak else None
    dtrial = default_trial(scan, cfg, tuned, log) if cfg.default_trial else {}
    return _ScanRun(name, note, comp, tuned, oracle, tune_s, oracle_s, hp_path, peak, dtrial)


def _verdict_row(r: _ScanRun) -> dict:
    p_def, p_tun, p_orc = (r.comp.metrics_for(r.name)[k]["psnr"] for k in _LABELS)
    gain, gap = p_tun - p_def, p_orc - p_tun
    return {
        "scan": r.name,
        "defaults": p_def,
        "tuned": p_tun,
        "oracle": p_orc,
        "tuned - defaults (dB)": gain,
        ">= 1 dB": "yes" if gain >= 1.0 else "no",
        "oracle - tuned (dB)": gap,
        "<= 0.5 dB": "yes" if gap <= 0.5 else "no",
    }


def _tuning_rows(r: _ScanRun) -> list[dict]:
    by_label = {x.label: x for x in r.comp.results if x.case == r.name}
    rows = []
    for label, tu, secs in ((_LABELS[1], r.tuned, r.tune_s), (_LABELS[2], r.oracle, r.oracle_s)):
        st = trial_stats(tu)
        rows.append(
            {
                "scan": r.name,
                "mode": label,
                **{k: fmt_h(k, tu.h[k]) for k in H_NAMES if k in tu.h},
                "chosen steps": tu.hparams["optim.steps"],
                "trials": st["trials"],
                "failed": st["failed"],
                "s / trial": st["s_per_trial"],
                "steps / trial": st["steps_per_trial"],
                "tuning s": secs,
                "final fit s": by_label[label].seconds,
            }
        )
    return rows


def _defaults_info(r: _ScanRun) -> dict:
    return next(x.info for x in r.comp.results if x.case == r.name and x.label == _LABELS[0])


def _diag_row(r: _ScanRun) -> dict:
    prox, peak = proxy(r.tuned), r.peak
    return {
        "scan": r.name,
        "spearman(val loss, -PSNR)": prox.get("spearman"),
        "chosen trial PSNR (80 %)": prox.get("picked_trial_psnr"),
        "best tuned-trial PSNR (80 %)": prox.get("best_trial_psnr"),
        "defaults as a trial: held-out loss": r.dtrial.get("score"),
        "defaults as a trial: rank": r.dtrial.get("rank"),
        "defaults as a trial: PSNR (80 %)": r.dtrial.get("psnr"),
        "defaults: hold-out steps": _defaults_info(r).get("chosen_steps"),
        "defaults: peak PSNR": None if peak is None else peak["psnr"],
        "defaults: peak step": None if peak is None else peak["step"],
        "oracle chosen steps": r.oracle.hparams["optim.steps"],
    }


def _tuning_summary(tu: Tuned, seconds: float) -> dict:
    return {"h": tu.h, "hparams": tu.hparams, "tune_seconds": seconds, **trial_stats(tu)}


def _scan_summary(r: _ScanRun, verdict: dict) -> dict:
    m = r.comp.metrics_for(r.name)
    peak = r.peak
    return {
        "note": r.note,
        "metrics": {k: dict(v) for k, v in m.items()},
        "seconds": {x.label: x.seconds for x in r.comp.results},
        "tuned": _tuning_summary(r.tuned, r.tune_s),
        "oracle": _tuning_summary(r.oracle, r.oracle_s),
        "verdict": verdict,
        "proxy": proxy(r.tuned),
        "defaults_as_trial": r.dtrial,
        "defaults_peak": None if peak is None else {k: v for k, v in peak.items() if k != "curve"},
        "defaults_holdout_steps": _defaults_info(r).get("chosen_steps"),
        "trials_tuned": r.tuned.trial_table(),
        "trials_oracle": r.oracle.trial_table(),
        "hparams_file": str(r.hp_path),
    }


def _progress_curves(r: _ScanRun) -> dict[str, tuple[list, list]]:
    curves = {
        "bilevel (tuned; trial image)": progress_curve(r.tuned, False),
        "oracle (trial image)": progress_curve(r.oracle, True),
    }
    if curves["bilevel (tuned; trial image)"][0]:
        p_def = r.comp.metrics_for(r.name)[_LABELS[0]]["psnr"]
        curves["NGP defaults (final)"] = ([0, len(r.tuned.result.trials) - 1], [p_def, p_def])
    return {k: v for k, v in curves.items() if v[0]}


def run_bilevel_tuned(cfg: BilevelTunedConfig, out: Path, show_progress=None, log: Log = print) -> Report:
    """Defaults vs bilevel-tuned vs oracle-tuned NGP (+ classical references) on each scan (module docstring)."""
    from inrecon.data import shared

    t_start = time.perf_counter()
    out = Path(out)
    notes, results = [], []
    for spec in cfg.scans:
        if spec.kind == "brain8ch" and not shared.available(shared.BRAIN8CH):
            notes.append(f"{scan_name(spec)}: skipped (real data {shared.BRAIN8CH} not found)")
            log(f"[{scan_name(spec)}] skipped: real data absent")
            continue
        r = _run_scan(spec, cfg, out, show_progress, log)
        notes.append(f"{r.name}: {r.note}")
        if r.peak is not None:
            _defaults_info(r).setdefault("peak_curve", r.peak["curve"])
        results.append(r)
    if not results:
        raise InreconError("no scan could be built", "check the experiment's scans and INRECON_DATA")
    rep = Report(
        title="Bilevel INR: tuned vs default vs oracle hyperparameters",
        subtitle=(
            f"{cfg.n_random} random + {cfg.n_guided} guided BO trials of <= {cfg.trial_steps} "
            f"steps each (tuned on the 80/20 k-space split; oracle: same budget, scored against the reference)"
        ),
        data_note="Data: " + "; ".join(notes),
    )
    summary = _tuned_report(rep, cfg, results)
    write_json(out / "results.json", summary)
    return set_environment(rep, t_start)


def _defaults_text(cfg: BilevelTunedConfig) -> tuple[dict, list[str], str]:
    """The NGP defaults (as the library has them now), those outside the search space, and the "what was run"
    text."""
    defaults = NGPConfig()
    keys = ("lr", "wd_enc", "wd_mlp", "delta", "per_level_scale", "loss", "mlp_layers", "steps", "patience")
    d = {k: ngp_value(defaults, k) for k in keys}
    outside = space_check({k: ngp_value(defaults, k) for k in H_NAMES})
    inr = cfg.inr_overrides()
    text = (
        "Per scan: (a) NGP with the library defaults read from NGPConfig at run time "
        f"({', '.join(f'{k}={v}' for k, v in d.items())}), stopped by the hold-out rule; (b) bilevel: "
        "hyperparameters (lr, wd_enc, wd_mlp, delta, per_level_scale) tuned by GP-UCB on the held-out 20 % of the "
        "k-space samples, then refitted on all samples for the chosen step count; (c) oracle: the same budget "
        "with every trial scored by its best PSNR against the reference (evaluation only); classical references "
        "with hold-out weights. INR overrides for every fit: "
        f"{json.dumps(inr) if inr else 'none (library defaults)'}. "
        + (
            f"The defaults lie outside the search space: {'; '.join(outside)}."
            if outside
            else "The defaults lie inside the search space."
        )
    )
    return d, outside, text


def _tuned_report(rep: Report, cfg: BilevelTunedConfig, results: list[_ScanRun]) -> dict:
    """Fill ``rep`` with the tables and figures of ``bilevel_tuned``; returns the results JSON."""
    comp = merge(r.comp for r in results)
    names = [r.name for r in results]
    verdicts = [_verdict_row(r) for r in results]
    d, outside, text = _defaults_text(cfg)
    rep.add_text("What was run", text)
    rep.add_table(
        "Requirement: tuned >= defaults + 1 dB and within 0.5 dB of the oracle",
        verdicts,
        columns=list(verdicts[0]),
        digits={"defaults": 2, "tuned": 2, "oracle": 2, "tuned - defaults (dB)": 2, "oracle - tuned (dB)": 2},
    )
    cols = ["method", "psnr", "ssim", "nrmse", "seconds", "chosen_steps", "steps_run"]
    for name in names:
        rows = [row for row in comp.rows() if row["case"] == name]
        rep.add_table(f"{name}: quality", rows, columns=cols, best=QUALITY_BEST)
    if len(names) > 1:
        rep.add_table(
            f"Mean ± std over {len(names)} scans",
            aggregate(comp.rows(), by="method", metrics=("psnr", "ssim", "nrmse", "seconds")),
            columns=["method", "n", "psnr", "ssim", "nrmse", "seconds"],
            best=QUALITY_BEST,
        )
    tuning_rows = [row for r in results for row in _tuning_rows(r)]
    rep.add_table(
        "Tuned hyperparameters, trials and times",
        tuning_rows,
        columns=list(tuning_rows[0]),
        caption="Times are wall-clock on this machine; 's / trial' is mean ± std over trials.",
    )
    diag_rows = [_diag_row(r) for r in results]
    rep.add_table(
        "Diagnostics: is the held-out loss a good proxy?",
        diag_rows,
        columns=list(diag_rows[0]),
        caption=(
            "Spearman rank correlation between each tuned trial's held-out loss and minus its PSNR (1 = the "
            "validation loss orders the trials exactly as the reference would). Trial PSNRs are of the best-step "
            "image of the 80 % fit. 'defaults: peak' is the defaults fitted on all samples with the stop picked "
            "by the reference. 'defaults as a trial': the defaults (their own training loss) trained on the 80 % "
            "split and scored by the same held-out loss; rank 1 = lower held-out loss than every tuned trial."
        ),
    )
    for r in results:
        _scan_figures(rep, comp, r)
    rep.add_figure(
        "Held-out loss vs PSNR of the tuned trials", scatter_figure({r.name: r.tuned for r in results})
    )
    summary = {"scans": {r.name: _scan_summary(r, v) for r, v in zip(results, verdicts)}}
    summary.update(verdict=verdicts, defaults=d, defaults_outside_space=outside, rows=comp.rows())
    return summary


def _scan_figures(rep: Report, comp: Comparison, r: _ScanRun) -> None:
    name = r.name
    rep.add_image_grid(
        f"{name}: reference vs methods",
        comp.images(name),
        reference=comp.references[name],
        metrics=comp.metrics_for(name),
    )
    progress = _progress_curves(r)
    if progress:
        rep.add_curves(
            f"{name}: tuning progress",
            progress,
            xlabel="trial",
            ylabel="PSNR of the best trial so far (dB)",
            caption="Tuned: PSNR of the trial with the lowest held-out loss so far; oracle: best PSNR so far.",
        )
    curves = comp.curves(name)
    peak_r = [x for x in comp.results if x.case == name and "peak_curve" in x.info]
    if peak_r:
        curves["NGP defaults (all samples, no stop)"] = tuple(peak_r[0].info["peak_curve"])
    if curves:
        rep.add_curves(f"{name}: PSNR during the final fits", curves)
