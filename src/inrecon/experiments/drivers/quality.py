"""The quality suite: every INR method against the best classical method on realistic scans, reference-free.

Cases come from the shared data (the real 8-coil brain, the real T1 slice simulated with 12 coils at 30 dB,
the real radial phantom scan, chest CT slices of two subjects simulated with and without Poisson noise from
the scanner's native 512 x 512 grid with detector cells of finite width, the real parallel-beam sinogram, real
micro-CT projections of a tooth, the real spiral phantom scan),
each tagged with a *half*: defaults are chosen on the ``tuning`` half and reported on the ``confirmation``
half. Every method chooses its parameters without the reference (classical weights and iteration counts by
hold-out, INR step counts by the hold-out rule). The table reports, per case, the best classical method and
each INR method's margin over it, and whether the INR's chosen stopping step landed within ``peak_tolerance``
dB of the hindsight peak of its final fit.

The real radial phantom has no reference image: its 29-spoke scan is scored against a CG-SENSE reconstruction of
the 69-spoke scan of the same phantom (least-squares scaled magnitude), which the report states; the real spiral
phantom scan keeps some of its 60 interleaves and is scored against CG-SENSE of the others. Nor has the real
micro-CT scan of a tooth (tomopy's Data Exchange file, 181 parallel views over 180 degrees): a case keeps some of
its views, spread evenly, and is scored against the filtered backprojection of the others, whose noise is
independent of the input's (it lowers every method's PSNR alike, a perfect image scoring about 32.8 dB at 45
views kept and 31.6 at 60, without favouring any; a regularised reference would favour its own kind), inside the
disc every view sees.

Each finished case is written to ``OUT/cases/NAME.json`` (its table rows) and ``NAME.npz`` (its images), keyed by a
hash of the case, every method's resolved settings, the library versions and the data folder; a run killed part-way
and started again into the same output folder (``resume=True``, the default) reads the cases it finished back
instead of reconstructing them again, and a changed setting or default reruns the case.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from inrecon import __version__
from inrecon.config import NonNegInt, PosFloat, PosInt, config_diff, config_to_dict
from inrecon.data import shared
from inrecon.data.atomic import atomic_path, write_json
from inrecon.data.paths import data_root
from inrecon.data.sampling import make_pattern
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.errors import InreconError
from inrecon.experiments.drivers.common import Log, entries, merge, set_environment
from inrecon.experiments.runner import CaseResult, Comparison, MethodRun, run_comparison
from inrecon.parallel import Runner
from inrecon.physics.coils import with_espirit_support
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.progress import progress
from inrecon.recon.inr.ngp import NGPConfig
from inrecon.recon.methods import METHODS
from inrecon.report import Report

__all__ = ["QualityCase", "QualityConfig", "build_case", "case_modality", "run_quality"]

CLASSICAL = {
    "mri": (
        MethodRun("CG-SENSE", "cgsense"),
        MethodRun("L1-wavelet", "l1wavelet", {"lam": "auto"}),
        MethodRun("TV", "tv", {"lam": "auto"}),
        MethodRun("PnP", "pnp", {"lam": "auto"}),
    ),
    "ct": (
        MethodRun("FBP", "fbp"),
        MethodRun("SART", "sart"),
        MethodRun("TV", "tv", {"lam_rel": "auto"}),
        MethodRun("PnP", "pnp", {"lam": "auto"}),
    ),
}
"""The classical references of each modality, every weight chosen by hold-out."""


@dataclass
class QualityCase:
    """One scan of the suite."""

    name: str = ""
    """Label in the tables."""
    half: Literal["tuning", "confirmation"] = "tuning"
    """Defaults are chosen on the tuning half and reported on the confirmation half."""
    source: Literal["brain8ch", "dipy", "radial", "spiral", "lungdx", "scope", "tooth"] = "dipy"
    """brain8ch (real 8-coil brain), dipy (real T1 slice, simulated coils), radial (real radial phantom, 29
    spokes), spiral (real 8-coil spiral phantom scan, ``views`` of its 60 interleaves kept, the rest make the
    reference), lungdx (real chest CT slice, simulated fan-beam sinogram), scope (real 90-view parallel
    sinogram), tooth (real micro-CT projections, ``views`` of its 181 parallel views kept, the rest make the
    reference)."""
    mask: Literal["bart", "sigpy"] = "bart"
    """brain8ch: the Poisson-disc mask (the BART workshop's, or the sigpy tutorial's on the same data)."""
    pattern: Literal["cartesian", "poisson"] = "cartesian"
    """dipy: the sampling pattern."""
    af: PosFloat = 6.0
    """dipy: acceleration (Cartesian line spacing or Poisson-disc acceleration)."""
    acs: PosInt = 24
    """dipy: fully sampled centre lines or calibration square."""
    coils: PosInt = 12
    """dipy: simulated coils."""
    snr_db: float = 30.0
    """dipy: SNR of the simulated noise (dB)."""
    subject: Literal["A0001", "A0002"] = "A0001"
    """lungdx: the subject (A0002: another scanner)."""
    slice: NonNegInt = 15
    """lungdx: the slice index; tooth: the detector row (0 or 1)."""
    size: PosInt = 128
    """lungdx (and dipy when smaller than 256): the image grid (size x size)."""
    views: PosInt = 60
    """lungdx: fan-beam views over 360 degrees (the DisINR geometry scaled to the grid); tooth: views kept,
    evenly spread over the scan's 181; spiral: interleaves kept, evenly spread over the scan's 60."""
    photons: PosFloat | None = None
    """lungdx: incident photons per ray for Poisson noise (unset: noise-free)."""
    object_grid: Literal["native", "same"] = "native"
    """lungdx: ``native`` projects the slice on the file's own 512 x 512 grid (``size`` must divide 512), so
    the sinogram carries the detail a real object has below the reconstruction grid, which no image on that
    grid explains; ``same`` projects the reconstruction grid itself, the "inverse crime" (data exactly of the
    kind the reconstruction models, which flatters every method, most of all on noise-free data; the suite's
    CT cases before 2026-12-03)."""
    rays_per_detector: PosInt = 4
    """lungdx: rays averaged over each detector cell's width (``simulate_ct``; 1: one ray through its
    centre)."""
    seed: int = 0
    """Noise and pattern seed."""


@dataclass
class QualityConfig:
    """The quality suite (module docstring)."""

    cases: tuple[QualityCase, ...] = ()
    """The scans (JSON objects with the keys of a case)."""
    halves: tuple[Literal["tuning", "confirmation"], ...] = ("tuning", "confirmation")
    """Which halves to run."""
    skip: tuple[str, ...] = ()
    """Names of cases not to run. The quick profile skips the four 90-view lungdx cases (the 60-view ones of
    the same slices stay, the harder sparse-view setting): on the 2-core reference CPU its 11 cases took 1316 s
    where all 15 took 1867 s in the same session (benchmarks/RESULTS.md, stop 48); and the three cases added at
    stop 57 to the full profile only (the real micro-CT of a tooth at 45 / 60 views, the real spiral phantom
    at 15 interleaves), so that the quick one stays under 20 minutes."""
    inr: tuple[Literal["ngp", "bilevel"], ...] = ("ngp",)
    """INR methods compared with the classical ones."""
    ngp: NGPConfig = field(default_factory=NGPConfig)
    """The scan-specific INR's settings (only what differs from its defaults is passed on)."""
    bilevel_trials: tuple[NonNegInt, NonNegInt] = (6, 6)
    """bilevel: random and guided trials."""
    resume: bool = True
    """Read back the cases an earlier run into the same output folder finished with the same settings
    (``OUT/cases``; module docstring) instead of reconstructing them again; false: rerun every case (the
    finished ones are written either way)."""
    peak_tolerance: PosFloat = 0.3
    """A stopping step is "at the peak" when its PSNR is within this many dB of the final fit's best."""
    jobs: PosInt = 1
    """Cases run at once, each in its own local process with ``cores // jobs`` torch threads (1: one after
    another in this process, with all of them). One fit does not use two cores fully, so on the 2-core
    reference CPU the quick suite took 1810 s with ``jobs=2`` (the quick profile's setting), where it had
    taken 2786 s with 1 and a 7-11 % slower hash lookup (benchmarks/RESULTS.md, stop 47). The seconds column then times a case sharing the machine, and another
    thread count sums in another order: a hold-out choice on the edge can flip (the radial scan's TV weight:
    33.01 dB with two threads, 32.66 with one)."""

    def check(self) -> None:
        self.cases = entries(QualityCase, self.cases, "cases")
        for case in self.cases:
            _check_grid(case)
        unknown = sorted(set(self.skip) - {c.name for c in self.cases})
        if unknown:
            raise InreconError(
                f"skip names {unknown}, which are not cases of the suite",
                f"name cases from {[c.name for c in self.cases]} (or --set skip=[] to run them all)",
            )


def _check_grid(case: QualityCase) -> None:
    """A lungdx case projected from the native slice needs a grid that divides it, a tooth case one of the two
    detector rows and at most half the scan's views, a spiral case at most half its interleaves (the rest make
    the reference; checked before any work)."""
    if case.source == "spiral" and not 2 <= case.views <= SPIRAL_INTERLEAVES // 2:
        raise InreconError(
            f"case {case.name!r}: spiral with {case.views} interleaves",
            f"use 2 <= views <= {SPIRAL_INTERLEAVES // 2} (the rest of the {SPIRAL_INTERLEAVES} make the reference)",
        )
    if case.source == "tooth" and (case.slice > 1 or not 2 <= case.views <= TOOTH_VIEWS // 2):
        raise InreconError(
            f"case {case.name!r}: tooth row {case.slice} with {case.views} views",
            f"use slice 0 or 1 and 2 <= views <= {TOOTH_VIEWS // 2} (the rest of the {TOOTH_VIEWS} make the "
            "reference)",
        )
    if case.source == "lungdx" and case.object_grid == "native" and shared.LUNGDX_NATIVE % case.size:
        raise InreconError(
            f"case {case.name!r}: size {case.size} does not divide the lungdx slices' native {shared.LUNGDX_NATIVE}",
            "use a size that divides 512 (128, 256), or object_grid='same'",
        )


def _dipy(case: QualityCase):
    import torch

    img = shared.dipy_t1()
    if case.size < img.shape[0]:
        t = torch.nn.functional.interpolate(
            torch.from_numpy(img)[None, None], size=(case.size, case.size), mode="area"
        )
        img = t[0, 0].numpy()
    mask, _ = make_pattern(case.pattern, img.shape, case.af, acs=case.acs, seed=case.seed)
    scan = simulate_mri(img, n_coils=case.coils, mask=mask, snr_db=case.snr_db, seed=case.seed)
    return with_espirit_support(scan)


def _spread(k: int, n: int) -> np.ndarray:
    """``k`` indices of ``0..n-1`` spread evenly (the first is 0)."""
    return np.floor(np.arange(k) * n / k).astype(np.int64)


TOOTH_VIEWS = 181
"""Views of the tooth scan (over 180 degrees)."""
TOOTH_ROI_MARGIN = 2
"""The tooth cases are scored inside the disc every view sees, this many pixels inside its edge: beyond it the
reference (an FBP) is extrapolation and truncation artefact, common to no two methods."""


def _tooth(case: QualityCase):
    """``case.views`` evenly spread views of the real tooth scan, scored against the filtered backprojection
    of the views left out: its noise is independent of the input's, so it adds the same error to every method
    on average and leaves their order as a noise-free reference would (a TV or INR reference would favour its
    own kind); the ROI is the field of view's inscribed disc (:data:`TOOTH_ROI_MARGIN`)."""
    import torch

    from inrecon.physics.fbp import fbp

    full = shared.tooth(row=case.slice)
    keep = _spread(case.views, TOOTH_VIEWS)
    rest = np.setdiff1d(np.arange(full.n_views), keep)
    k, r = torch.from_numpy(keep), torch.from_numpy(rest)
    ref = fbp(full.sinogram[r], full.geometry, full.angles[r])
    n = full.geometry.image_shape[0]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    disc = torch.from_numpy(np.hypot(yy, xx) <= n / 2 - TOOTH_ROI_MARGIN)
    prov = {
        **full.provenance,
        "views_kept": keep.tolist(),
        "reference": f"FBP of the other {rest.size} views",
    }
    return dataclasses.replace(
        full, sinogram=full.sinogram[k], angles=full.angles[k], target=ref, roi=disc, provenance=prov
    )


SPIRAL_INTERLEAVES = 60
"""Interleaves of the spiral phantom scan."""
SPIRAL_GRID = 320
"""The spiral cases' image grid: the phantom's bottles reach beyond the reader's 256 x 256 (the scan's sampled
field of view is about 400 pixels)."""


def _spiral(case: QualityCase):
    """``case.views`` evenly spread interleaves of the real spiral phantom scan, scored against CG-SENSE of the
    interleaves left out (its noise independent of the input's, as the tooth's reference; least-squares scaled
    magnitude, as the radial case's)."""
    import torch

    from inrecon.recon.api import run_method

    full = dataclasses.replace(shared.spiral_phantom(), image_shape=(SPIRAL_GRID, SPIRAL_GRID))
    keep = _spread(case.views, SPIRAL_INTERLEAVES)
    interleave = np.arange(full.kspace.shape[1]) % SPIRAL_INTERLEAVES  # samples are (readout, interleave)

    def part(mask):
        m = torch.from_numpy(mask)
        return dataclasses.replace(
            full, kspace=full.kspace[:, m], trajectory=full.trajectory[m], dcf=full.dcf[m]
        )

    ref = run_method("cgsense", part(~np.isin(interleave, keep)), show_progress=False).image.abs()
    scan = part(np.isin(interleave, keep))
    prov = {
        **scan.provenance,
        "interleaves_kept": keep.tolist(),
        "reference": f"CG-SENSE of the other {SPIRAL_INTERLEAVES - case.views} interleaves",
    }
    return dataclasses.replace(scan, target=ref / ref.max(), provenance=prov)


def _radial():
    from inrecon.recon.api import run_method

    ref_scan = shared.radial_phantom(69)
    ref = run_method("cgsense", ref_scan, show_progress=False).image.abs()
    scan = shared.radial_phantom(29)
    return dataclasses.replace(scan, target=ref / ref.max())


def build_case(case: QualityCase):
    """The scan of ``case`` with its reference (raises naming the missing file when the data is absent)."""
    _check_grid(case)
    if case.source == "brain8ch":
        return with_espirit_support(shared.brain8ch(mask=case.mask))
    if case.source == "dipy":
        return _dipy(case)
    if case.source == "radial":
        return _radial()
    if case.source == "spiral":
        return _spiral(case)
    if case.source == "scope":
        return shared.scope_parallel(90)
    if case.source == "tooth":
        return _tooth(case)
    grid = shared.LUNGDX_NATIVE if case.object_grid == "native" else case.size
    img = shared.lungdx_slices(case.subject, indices=[case.slice], size=grid)[0]
    geom = shared.disinr_fan_geometry((case.size, case.size))
    return simulate_ct(
        img,
        geom,
        full_scan_angles(case.views),
        photons=case.photons,
        seed=case.seed,
        rays_per_detector=case.rays_per_detector,
    )


def _inr_runs(cfg: QualityConfig) -> list[MethodRun]:
    over = config_diff(cfg.ngp)
    runs = []
    if "ngp" in cfg.inr:
        runs.append(MethodRun("NGP", "ngp", over))
    if "bilevel" in cfg.inr:
        n_random, n_guided = cfg.bilevel_trials
        runs.append(
            MethodRun(
                "bilevel",
                "bilevel",
                {**{f"ngp.{k}": v for k, v in over.items()}, "n_random": n_random, "n_guided": n_guided},
            )
        )
    return runs


def _peak(info: dict) -> float | None:
    h = info.get("history") or {}
    return max(h["psnr"]) if h.get("psnr") else None


def _case_rows(comp: Comparison, case: QualityCase, cfg: QualityConfig) -> list[dict]:
    res = [r for r in comp.results if r.case == case.name]
    classical = {r.label for r in res} & {m.label for runs in CLASSICAL.values() for m in runs}
    best = max((r for r in res if r.label in classical), key=lambda r: r.metrics["psnr"])
    rows = []
    for r in res:
        if r.label in classical:
            continue
        peak = _peak(r.info)
        rows.append(
            {
                "half": case.half,
                "case": case.name,
                "best classical": best.label,
                "classical psnr": best.metrics["psnr"],
                "method": r.label,
                "psnr": r.metrics["psnr"],
                "margin": r.metrics["psnr"] - best.metrics["psnr"],
                "chosen steps": r.info.get("chosen_steps"),
                "peak psnr": peak,
                "at peak": None if peak is None else bool(r.metrics["psnr"] >= peak - cfg.peak_tolerance),
                "seconds": r.seconds,
            }
        )
    return rows


def case_modality(case: QualityCase) -> str:
    """ "ct" for the lungdx, SCOPE and tooth cases, "mri" for the rest."""
    return "ct" if case.source in ("lungdx", "scope", "tooth") else "mri"


def _runs(case: QualityCase, cfg: QualityConfig) -> list[MethodRun]:
    """The methods of ``case``: its modality's classical references, then the INR methods."""
    return [*CLASSICAL[case_modality(case)], *_inr_runs(cfg)]


def _case_key(case: QualityCase, runs: list[MethodRun]) -> str:
    """The hash a finished case is stored under: the case, every method's resolved settings (so that a changed
    default reruns it), the library versions and the data folder."""
    import torch

    modality = case_modality(case)
    methods = [
        {
            "label": r.label,
            "method": r.method,
            "model": r.model,
            "config": config_to_dict(METHODS.resolve(r.method, modality).build(modality, r.overrides)),
        }
        for r in runs
    ]
    versions = {"inrecon": __version__, "torch": torch.__version__}
    data = str(data_root().resolve())  # another data folder: other scans under the same names
    return config_fingerprint(
        {"case": dataclasses.asdict(case), "methods": methods, "versions": versions, "data": data}
    )


def _save_case(folder: Path, name: str, key: str, comp: Comparison) -> None:
    """``comp`` (one case) as ``NAME.npz`` (images, reference, ROI), then ``NAME.json`` (rows; its presence marks
    the case finished), each written atomically."""
    arrays = {f"image{i}": r.image for i, r in enumerate(comp.results)}
    arrays["reference"] = comp.references[name]
    if comp.rois.get(name) is not None:
        arrays["roi"] = comp.rois[name]
    with atomic_path(folder / f"{name}.npz") as tmp:
        np.savez(tmp, **arrays)
    results = [
        {"label": r.label, "metrics": r.metrics, "seconds": r.seconds, "info": r.info} for r in comp.results
    ]
    write_json(folder / f"{name}.json", {"key": key, "case": name, "results": results})


def _load_case(folder: Path, name: str, key: str) -> Comparison | None:
    """The case stored under ``key``, or ``None`` (not stored, stored with other settings, or unreadable)."""
    import json

    try:
        meta = json.loads((folder / f"{name}.json").read_text())
        if meta.get("key") != key:
            return None
        with np.load(folder / f"{name}.npz") as arrays:
            comp = Comparison(
                references={name: arrays["reference"]},
                rois={name: arrays["roi"] if "roi" in arrays else None},
            )
            for i, r in enumerate(meta["results"]):
                comp.results.append(
                    CaseResult(name, r["label"], r["metrics"], r["seconds"], r["info"], arrays[f"image{i}"])
                )
    except (OSError, ValueError, KeyError):
        return None
    return comp


def _run_case(case: QualityCase, cfg: QualityConfig, show_progress, log: Log, store: Path | None = None):
    """``(comparison, note)`` of one case, reconstructed (and then written to ``store``)."""
    runs = _runs(case, cfg)
    try:
        scan = build_case(case)
    except Exception as exc:  # absent real data: the case is skipped, and the report says so
        if log is not None:
            log(f"  {case.name}: skipped ({exc})")
        return None, f"{case.name}: skipped ({exc})"
    comp = run_comparison([(case.name, scan)], runs, show_progress=show_progress, log=log)
    if store is not None:
        _save_case(store, case.name, _case_key(case, runs), comp)
    return comp, None


def _case_job(_context, job: tuple[QualityCase, QualityConfig, Path | None]):
    """One case in a worker process (``jobs > 1``): its comparison or a skip note, no messages."""
    case, cfg, store = job
    return _run_case(case, cfg, False, None, store)


# Rough seconds of one case with the quick profile on one core of the 2-core reference CPU beside the other
# worker (stop 67's suite: both pnp methods, NGP with its MRI denoiser prior, which takes pnp's noise level; the
# tooth and the spiral scan, which the quick profile skips: stop 57's seconds plus a pnp run): only the order in
# which parallel workers take the cases (longest first) depends on them, never a result.
_CASE_SECONDS = {
    "radial": 620.0,
    "spiral": 1000.0,
    "scope": 880.0,
    "tooth": 600.0,
    "brain8ch": 410.0,
    "dipy": 170.0,
}


def _expected_seconds(case: QualityCase) -> float:
    if case.source == "lungdx":  # noise-free: the hold-out stages run to the budget's end
        return (250.0 if case.photons else 400.0) * (case.size / 128) ** 2
    return _CASE_SECONDS[case.source]


def _run_cases(cases: list[QualityCase], cfg: QualityConfig, show_progress, log: Log, store: Path | None):
    """``(comparison, note)`` of every case, in order: those ``store`` holds with these settings read back
    (``cfg.resume``), the others run one after another, or ``cfg.jobs`` at once (handed to the workers longest
    first, so that no long case starts last and leaves a core idle)."""
    done: dict[int, tuple] = {}
    if store is not None and cfg.resume:
        for k, case in enumerate(cases):
            comp = _load_case(store, case.name, _case_key(case, _runs(case, cfg)))
            if comp is not None:
                done[k] = (comp, None)
        if done:
            names = ", ".join(cases[k].name for k in sorted(done))
            log(
                f"  {len(done)} of {len(cases)} cases read back from {store}, finished by an earlier run with "
                f"the same settings (--set resume=false reruns them): {names}"
            )
            for k in sorted(done):
                for r in done[k][0].results:
                    log(r.line())
    todo = [k for k in range(len(cases)) if k not in done]
    if cfg.jobs == 1 or len(todo) < 2:
        for k in todo:
            done[k] = _run_case(cases[k], cfg, show_progress, log, store)
        return [done[k] for k in range(len(cases))]
    jobs = min(cfg.jobs, len(todo))
    log(f"  {len(todo)} cases, {jobs} at once in local processes")
    order = sorted(todo, key=lambda k: -_expected_seconds(cases[k]))
    bar = progress(total=len(order), desc="cases", show=show_progress)
    with Runner(jobs) as runner:
        for i, value in runner.values(
            _case_job,
            [(cases[k], cfg, store) for k in order],
            what=lambda job: f"quality case {job[0].name!r}",
            fix="run it with --set jobs=1 for the whole traceback",
        ):
            k = order[i]
            done[k] = value
            comp, note = value
            if note:
                log(f"  {note}")
            else:
                for r in comp.results:
                    log(r.line())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return [done[k] for k in range(len(cases))]


def run_quality(cfg: QualityConfig, out: Path, show_progress=None, log: Log = print) -> Report:
    """Run the suite (module docstring); returns the report."""
    t0 = time.perf_counter()
    rep = Report(
        title="Quality suite: INR methods vs the best classical method",
        subtitle="Reference-free parameter choice everywhere; defaults chosen on the tuning half",
        data_note="Data: INRECON_DATA (real scans and real images with simulated acquisitions).",
    )
    rows, comps, notes = [], [], []
    cases = [c for c in cfg.cases if c.half in cfg.halves and c.name not in cfg.skip]
    for case, (comp, note) in zip(cases, _run_cases(cases, cfg, show_progress, log, out / "cases")):
        if note:
            notes.append(note)
            continue
        comps.append(comp)
        rows += _case_rows(comp, case, cfg)
        first = comp.images(case.name)
        rep.add_image_grid(
            case.name, first, reference=comp.references[case.name], metrics=comp.metrics_for(case.name)
        )
    for half in cfg.halves:
        sub = [r for r in rows if r["half"] == half]
        if sub:
            rep.add_table(
                f"{half} half: margin over the best classical method (dB)",
                sub,
                columns=list(sub[0]),
                best={"margin": "max"},
            )
            margins = [r["margin"] for r in sub]
            log(f"{half}: mean margin {np.mean(margins):+.2f} dB over {len(sub)} rows")
    if notes:
        rep.add_text("Skipped", "\n".join(notes))
    write_json(out / "results.json", {"rows": rows, "all": merge(comps).rows() if comps else []})
    return set_environment(rep, t0)
