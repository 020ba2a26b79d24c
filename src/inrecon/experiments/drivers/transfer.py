"""``bilevel_transfer`` (Bilevel paper H2/H3): hyperparameter transfer.

Tune on a source slice, save the hyperparameters with :func:`~inrecon.tuning.hparams.save_hparams`, load them
with :func:`~inrecon.tuning.hparams.load_hparams` and reconstruct target scans with ``ngp`` and those overrides
(the ``inrecon recon --method ngp --hparams`` semantics: the tuned step count, no hold-out), and also with the
hold-out rule choosing the step count; compared with the defaults and with ``h`` tuned on the target itself.
Targets: other slices of the same protocol and the source slice under another sampling pattern (Poisson disc at
the Cartesian mask's achieved acceleration). Trial logs and hyperparameter files are written next to the
report (``OUT/NAME/``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from inrecon.data.atomic import write_json
from inrecon.errors import InreconError
from inrecon.experiments.drivers.common import (
    QUALITY_BEST,
    Log,
    delta,
    entries,
    merge,
    set_environment,
)
from inrecon.experiments.drivers.scans import Protocol, Subject, attach_maps, build_scan, scan_spec
from inrecon.experiments.drivers.tuning import TuningBudget, fmt_h, trial_stats, tune
from inrecon.experiments.runner import Comparison, MethodRun, run_comparison
from inrecon.report import Report, aggregate

__all__ = ["BilevelTransferConfig", "run_bilevel_transfer"]

_OWN = "own h (tuned here)"


@dataclass
class BilevelTransferConfig(TuningBudget):
    """Bilevel H2/H3: h tuned on a source slice, applied to other slices and another sampling pattern."""

    protocol: Protocol = field(default_factory=lambda: Protocol(shape=(256, 256)))
    """The acquisition of the source and of every target."""
    source: Subject = field(default_factory=lambda: Subject(name="phantom s11 T1", seed=11))
    """The slice the hyperparameters are tuned on."""
    targets: tuple[Subject, ...] = field(
        default_factory=lambda: (
            Subject(name="phantom s23 T1", seed=23, noise_seed=1),
            Subject(name="real T1 slice", image="dipy", seed=11, noise_seed=2),
            Subject(name="phantom s11 T2", seed=11, contrast="t2", noise_seed=3),
            Subject(name="phantom s11 T1 Poisson", seed=11, pattern="poisson"),
        )
    )
    """The scans h is transferred to (objects with the keys of a subject: name, image, seed, contrast,
    pattern, poisson_af, mask_seed, noise_seed)."""
    tune_targets: bool = True
    """Also tune on every target (the "own h" reference)."""

    def check(self) -> None:
        self.targets = entries(Subject, self.targets, "targets")
        if not self.targets:
            raise InreconError("bilevel_transfer has no targets", "give at least one entry in targets")


def _protocol_row(name: str, record: dict, scan) -> dict:
    """What ``protocol_mismatches`` warns about for ``scan``, and the recorded differences it does not."""
    from inrecon.tuning.hparams import protocol_mismatches

    mism = protocol_mismatches(record, scan)
    want = record.get("protocol", {})
    other = [
        f"{k}: tuned on {want[k]}, scan has {scan.provenance[k]}"
        for k in ("pattern", "contrast", "anatomy")
        if k in want and k in (scan.provenance or {}) and want[k] != scan.provenance[k]
    ]
    return {
        "target": name,
        "protocol_mismatches (warned by recon --hparams)": "; ".join(mism) or "none",
        "other recorded differences (not warned)": "; ".join(other) or "none",
    }


def _gap_row(name: str, comp: Comparison) -> dict:
    m = comp.metrics_for(name)
    row = {
        "target": name,
        "defaults": m["NGP defaults"]["psnr"],
        "transferred": m["transferred h"]["psnr"],
        "transferred + hold-out": m["transferred h + hold-out stop"]["psnr"],
        "own h": m.get(_OWN, {}).get("psnr"),
    }
    row["transferred - defaults"] = delta(row["transferred"], row["defaults"])
    row["own - transferred"] = delta(row["own h"], row["transferred"])
    return row


def _run_target(
    k: int, subject: Subject, cfg: BilevelTransferConfig, record: dict, out: Path, show_progress, log
):
    """Defaults, transferred h (with and without the hold-out stop) and own h on target ``k``; returns
    ``(name, note, comparison, protocol row, own tuning or None)``."""
    name = subject.name or f"target{k}"
    scan, note = build_scan(scan_spec(cfg.protocol, subject))
    scan = attach_maps(scan, cfg.inr.data.maps)
    log(f"[target {name}] {note}")
    holdout = {"stop.rule": "holdout", "optim.steps": cfg.trial_steps, "stop.patience": cfg.trial_patience}
    runs = [
        MethodRun("NGP defaults", "ngp", cfg.defaults_overrides()),
        MethodRun("transferred h", "ngp", dict(record["hparams"])),
        MethodRun("transferred h + hold-out stop", "ngp", {**record["hparams"], **holdout}),
    ]
    own = None
    if cfg.tune_targets:
        tuned, seconds, _ = tune(scan, cfg, out, f"target{k}", False, show_progress, log)
        own = {"h": tuned.h, "hparams": tuned.hparams, "tune_seconds": seconds}
        runs.append(MethodRun(_OWN, "ngp", dict(tuned.hparams)))
    comp = run_comparison([(name, scan)], runs, show_progress=show_progress, log=log)
    return name, note, comp, _protocol_row(name, record, scan), own


def run_bilevel_transfer(
    cfg: BilevelTransferConfig, out: Path, show_progress=None, log: Log = print
) -> Report:
    """Tune on a source slice, transfer ``h`` to other slices and another sampling pattern (module docstring)."""
    from inrecon.tuning.hparams import load_hparams

    t_start = time.perf_counter()
    out = Path(out)
    src_name = cfg.source.name or "source"
    src, src_note = build_scan(scan_spec(cfg.protocol, cfg.source))
    src = attach_maps(src, cfg.inr.data.maps)
    log(f"[source {src_name}] {src_note}")
    tuned, tune_s, hp_path = tune(src, cfg, out, "source", False, show_progress, log)
    record = load_hparams(hp_path)  # what `inrecon recon --method ngp --hparams FILE` applies
    # the source itself: defaults vs its own tuned h (the transfer's starting point)
    src_runs = [
        MethodRun("NGP defaults", "ngp", cfg.defaults_overrides()),
        MethodRun(_OWN, "ngp", dict(tuned.hparams)),
    ]
    comps = [run_comparison([(f"{src_name} (source)", src)], src_runs, show_progress=show_progress, log=log)]
    notes, names, mism_rows, own_tuned = [f"source {src_name}: {src_note}"], [], [], {}
    for k, subject in enumerate(cfg.targets):
        name, note, comp, mism, own = _run_target(k, subject, cfg, record, out, show_progress, log)
        notes.append(f"{name}: {note}")
        names.append(name)
        comps.append(comp)
        mism_rows.append(mism)
        if own is not None:
            own_tuned[name] = own
    comp = merge(comps)
    gap_rows = [_gap_row(name, comp) for name in names]
    rep = Report(
        title="Bilevel INR: hyperparameter transfer",
        subtitle=f"h tuned on '{src_name}' ({len(tuned.result.trials)} trials), applied to other scans",
        data_note="Data: " + "; ".join(notes),
    )
    rep.add_text("What was run", _what_was_run(cfg, src_name, record, tuned.h))
    _transfer_tables(rep, comp, gap_rows, mism_rows, [f"{src_name} (source)", *names])
    source = {
        "name": src_name,
        "note": src_note,
        "h": tuned.h,
        "hparams": tuned.hparams,
        "tune_seconds": tune_s,
    }
    results = {
        "source": {**source, **trial_stats(tuned)},
        "targets_own": own_tuned,
        "gaps": gap_rows,
        "rows": comp.rows(),
        "hparams_file": str(hp_path),
    }
    write_json(out / "results.json", results)
    return set_environment(rep, t_start)


def _what_was_run(cfg: BilevelTransferConfig, src_name: str, record: dict, h: dict) -> str:
    inr = cfg.inr_overrides()
    return (
        f"The bilevel tuner ran on the source '{src_name}'; its hyperparameters were written with save_hparams "
        "and read back with load_hparams. 'transferred h' reconstructs each target with ngp and those overrides "
        "exactly as `inrecon recon --method ngp --hparams FILE` does (tuned lr, weight decays, delta, hash "
        f"scale, self-weighted loss and the source's step count {record['hparams']['optim.steps']}, no "
        "hold-out); 'transferred h + hold-out stop' keeps h but lets the hold-out rule pick the step count (step "
        f"cap {cfg.trial_steps}); 'own h' is tuned on the target itself with the same budget. Tuned source h: "
        + ", ".join(f"{k}={fmt_h(k, v)}" for k, v in h.items())
        + f". INR overrides for every fit: {json.dumps(inr) if inr else 'none'}."
    )


def _transfer_tables(
    rep: Report, comp: Comparison, gap_rows: list, mism_rows: list, cases: list[str]
) -> None:
    rep.add_table(
        "PSNR (dB) per target and the transfer gaps",
        gap_rows,
        columns=list(gap_rows[0]),
        digits={k: 2 for k in gap_rows[0] if k != "target"},
    )
    targets = cases[1:]
    rows_t = [r for r in comp.rows() if r["case"] in targets]
    rep.add_table(
        f"Mean ± std over the {len(targets)} targets",
        aggregate(rows_t, by="method", metrics=("psnr", "ssim", "nrmse", "seconds")),
        columns=["method", "n", "psnr", "ssim", "nrmse", "seconds"],
        best=QUALITY_BEST,
    )
    cols = ["case", "method", "psnr", "ssim", "nrmse", "seconds", "chosen_steps", "steps_run"]
    rep.add_table("Every reconstruction", comp.rows(), columns=cols)
    rep.add_table("Protocol checks (protocol_mismatches of the hparams file)", mism_rows)
    for case in cases:
        rep.add_image_grid(
            f"{case}: reference vs methods",
            comp.images(case),
            reference=comp.references[case],
            metrics=comp.metrics_for(case),
        )
