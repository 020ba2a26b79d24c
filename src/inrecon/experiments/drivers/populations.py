"""The DisINR-paper experiments' common ground: their config sections, the subject populations (real data
when present, phantoms otherwise), pre-training of the population methods and the method line-up.

Every DisINR driver (:mod:`inrecon.experiments.drivers.disinr`) builds its pre-training and test populations
here, pre-trains on measurements only through :func:`inrecon.recon.api.pretrain`, and compares the methods on
unseen subjects with the same reference-free stopping rule.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from inrecon import __version__
from inrecon.config import InRange, NonNegInt, PosInt, config_to_dict
from inrecon.data import shared
from inrecon.data.atomic import write_json
from inrecon.data.paths import data_root
from inrecon.data.phantoms import body_ct_phantom, brain_phantom
from inrecon.data.sampling import make_pattern
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.errors import InreconError
from inrecon.experiments.drivers.common import QUALITY_BEST, Log, set_environment
from inrecon.experiments.runner import Comparison, MethodRun, run_comparison
from inrecon.parallel import Runner
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.api import pretrain
from inrecon.recon.methods import METHODS
from inrecon.report import Report, aggregate
from inrecon.tuning.hparams import scan_identity

__all__ = [
    "CTMethod",
    "Fitting",
    "HashArch",
    "MRIMethod",
    "MRISimulation",
    "MetaPretraining",
    "PopulationMethod",
    "Pretrainer",
    "Pretraining",
    "Running",
    "Subjects",
    "compare",
    "ct_images",
    "ct_scans",
    "dipy_test_scan",
    "dipy_test_simulation",
    "domain_sections",
    "method_runs",
    "mri_images",
    "mri_pretrain_images",
    "mri_scans",
    "new_report",
    "phantom_object_factor",
    "pretrain_and_compare",
    "section",
]

CTMethod = Literal["fbp", "sart", "tv", "ngp", "saxnerf", "meta", "strainer", "disinr"]
"""Methods a CT experiment can compare."""
MRIMethod = Literal["zf", "cgsense", "l1wavelet", "tv", "imjense", "ngp", "meta", "strainer", "disinr"]
"""Methods an MRI experiment can compare."""
PopulationMethod = Literal["disinr", "meta", "strainer"]
"""Methods pre-trained on a population."""
Pattern = Literal["cartesian", "poisson", "radial"]
"""Sampling patterns of the simulated MRI acquisitions."""

_LABELS = {
    "zf": "ZF",
    "cgsense": "CG-SENSE",
    "l1wavelet": "L1-wavelet",
    "tv": "TV",
    "fbp": "FBP",
    "sart": "SART",
    "ngp": "NGP",
    "imjense": "IMJENSE",
    "saxnerf": "SAX-NeRF",
    "meta": "Meta",
    "strainer": "STRAINER",
    "disinr": "DisINR",
}


# --- config sections ------------------------------------------------------------------------------------
@dataclass
class HashArch:
    """Hash-grid size of every NGP fit and every pre-trained model (unset: each method's default)."""

    n_levels: PosInt | None = None
    """Resolution levels L."""
    log2_table_size: Annotated[int, InRange(0, 26)] | None = None
    """log2 of the hash table size per level."""

    def overrides(self) -> dict:
        """The settings given, as method config overrides."""
        return {k: v for k, v in config_to_dict(self).items() if v is not None}


@dataclass
class Subjects:
    """Who is in the pre-training and test populations."""

    size: PosInt = 256
    """Image side in pixels (square images)."""
    n_pretrain: PosInt = 20
    """Pre-training subjects."""
    n_test: PosInt = 5
    """Test subjects per domain."""
    real: bool = True
    """Use real data from INRECON_DATA when present (false: phantoms only)."""
    ct_object_grid: Literal["native", "same"] = "native"
    """CT: the grid the sinograms are projected from. ``native``: the lungdx slices on their own 512 x 512 grid
    (``size`` must divide 512; phantoms are drawn up to 4x finer, :func:`phantom_object_factor`), four rays per
    detector cell, so the data carry the detail a real object has below the reconstruction grid; ``same``: the
    reconstruction grid itself, the "inverse crime" of the CT benchmarks before 2026-12-03 (data exactly of the
    kind every method models, which flatters them all, most of all on noise-free data)."""


@dataclass
class Pretraining:
    """How the population methods are pre-trained."""

    pretrain_steps: PosInt = 4000
    """Pre-training steps of DisINR and STRAINER."""
    subjects_per_step: PosInt = 4
    """Subjects drawn for each pre-training step."""
    arch: HashArch = field(default_factory=HashArch)
    """Hash-grid size of the pre-trained models and of NGP."""


@dataclass
class MetaPretraining(Pretraining):
    """Pre-training that may include Meta (Reptile)."""

    meta_outer_steps: PosInt = 400
    """Meta's outer (Reptile) steps."""
    meta_inner_steps: PosInt = 5
    """Meta's inner steps per outer step."""


@dataclass
class Fitting:
    """The budget of every scan-specific fit and adaptation."""

    inr_steps: PosInt = 2000
    """Step cap of every INR fit (the hold-out rule usually stops earlier)."""
    patience: NonNegInt = 300
    """Hold-out patience of every INR fit."""

    def inr_overrides(self) -> dict:
        return {"steps": self.inr_steps, "patience": self.patience}


@dataclass
class Running:
    """How an experiment runs: how many reconstructions at once, and whether it picks up an earlier run."""

    jobs: PosInt = 1
    """Reconstructions of a comparison at once, each (case, method) pair in a local worker process with
    ``cores // jobs`` torch threads, the population methods' adaptations handed out first (1: one after another
    in this process). The tables are the same; the seconds column then times a fit sharing the machine."""
    resume: bool = True
    """Pick up an earlier run into the same output folder: its finished pre-trainings (``models/``, each with
    its key) and reconstructions (``pairs/``) with the same settings and data are read back, and a pre-training
    it was killed in resumes from its checkpoint (``models/.checkpoints/``); false: redo everything."""


@dataclass
class MRISimulation:
    """The simulated multi-coil acquisitions."""

    coils: PosInt = 12
    """Simulated receive coils."""
    acs: PosInt = 24
    """Fully sampled centre lines (Cartesian) or calibration square (Poisson)."""
    snr_db: float = 30.0
    """SNR of the simulated noise (dB)."""
    afs: tuple[PosInt, ...] = (6,)
    """Accelerations (line spacings) of the 1D Cartesian patterns the models are pre-trained and tested on."""


# --- populations ----------------------------------------------------------------------------------------
def phantom_object_factor(n: int) -> int:
    """How much finer than an ``n x n`` reconstruction grid CT phantoms are drawn to be projected (as lungdx
    slices are from their 512 x 512 grid): 4, or less where that would pass 512 (256: 2)."""
    return max(1, min(4, shared.LUNGDX_NATIVE // n))


CT_RAYS_PER_DETECTOR = 4
"""Rays averaged over each detector cell when the object is finer than the grid (``simulate_ct``)."""


def ct_images(p: Subjects, log: Log) -> tuple[list, list, list, str]:
    """(pre-train images, in-domain test images, out-of-domain test images, data note); the images are on the
    object grid of ``p.ct_object_grid`` (:func:`ct_scans` projects them onto the ``p.size`` grid)."""
    n = p.size
    native = p.ct_object_grid == "native"
    if p.real and shared.available(shared.LUNGDX_A0001) and shared.available(shared.LUNGDX_A0002):
        if native and shared.LUNGDX_NATIVE % n:
            raise InreconError(
                f"size {n} does not divide the lungdx slices' native {shared.LUNGDX_NATIVE}",
                "use a size that divides 512 (128, 256), or ct_object_grid='same'",
            )
        grid = shared.LUNGDX_NATIVE if native else n
        a = shared.lungdx_slices("A0001", size=grid)
        b = shared.lungdx_slices("A0002", size=grid)
        pre_idx = np.linspace(0, len(a) - 1, p.n_pretrain + p.n_test).round().astype(int)
        test_pos = np.linspace(1, len(pre_idx) - 2, p.n_test).round().astype(int)
        test_idx = pre_idx[test_pos]
        pre_idx = np.setdiff1d(pre_idx, test_idx)
        ood_idx = np.linspace(3, len(b) - 4, p.n_test).round().astype(int)
        note = (
            f"Data: real chest CT (TCIA Lung-PET-CT-Dx). Pre-training: {len(pre_idx)} slices of A0001 "
            f"(Philips); in-domain test: {len(test_idx)} other A0001 slices; out-of-domain: {len(ood_idx)} "
            f"slices of A0002 (Siemens B40f). HU window [-800, 400] -> [0, 1], {n}x{n}, 1 mm pixels; "
            + (
                "sinograms projected from the native 512x512 slices."
                if native
                else "sinograms projected from the reconstruction grid (the inverse crime)."
            )
        )
        return list(a[pre_idx]), list(a[test_idx]), list(b[ood_idx]), note
    log("  real CT data not found: using chest phantoms")
    m = n * phantom_object_factor(n) if native else n
    pre = [body_ct_phantom((m, m), seed=s) for s in range(p.n_pretrain)]
    test = [body_ct_phantom((m, m), seed=500 + s) for s in range(p.n_test)]
    ood = [np.clip(body_ct_phantom((m, m), seed=900 + s) * 1.08 - 0.03, 0, 1) for s in range(p.n_test)]
    note = "Data: chest phantoms (no real CT found); out-of-domain = phantoms with shifted contrast" + (
        f"; sinograms projected from phantoms drawn {m // n}x finer than the grid." if native else "."
    )
    return pre, test, ood, note


def ct_scans(images, views: int, photons: float = 0.0, seed0: int = 0, size: int | None = None) -> list:
    """Sparse-view fan-beam sinograms of ``images`` on the ``size x size`` grid (default: the images' own; the
    DisINR geometry, ``views`` over a full turn). Images finer than the grid are projected as the object
    (``simulate_ct``, with :data:`CT_RAYS_PER_DETECTOR` rays per detector cell; the scans' references are their
    block means). With ``photons`` > 0, Poisson noise at that many photons per ray (image ``i`` seeded ``seed0 +
    i``, recorded in the scan so that the counts-weighted data terms can use it)."""
    n = size or images[0].shape[0]
    geom = shared.disinr_fan_geometry((n, n))
    angles = full_scan_angles(views)
    rays = CT_RAYS_PER_DETECTOR if images[0].shape[0] > n else 1
    return [
        simulate_ct(img, geom, angles, photons=photons or None, seed=seed0 + i, rays_per_detector=rays)
        for i, img in enumerate(images)
    ]


def mri_scans(
    images,
    sim: MRISimulation,
    af: float,
    *,
    seed0: int = 0,
    pattern: Pattern = "cartesian",
    coils: int | None = None,
    acs: int | None = None,
) -> list:
    """Multi-coil acquisitions of ``images`` with ``sim``'s settings (``coils``/``acs`` replace its own);
    subject ``i`` gets noise (and a Poisson mask) seeded ``seed0 + i``; radial readouts are Nyquist-sampled."""
    out = []
    for i, img in enumerate(images):
        mask, traj = make_pattern(pattern, img.shape, af, acs=acs or sim.acs, seed=seed0 + i)
        scan = simulate_mri(
            img, n_coils=coils or sim.coils, mask=mask, trajectory=traj, snr_db=sim.snr_db, seed=seed0 + i
        )
        out.append(scan)
    return out


def dipy_test_simulation(size: int) -> MRISimulation:
    """The acquisition of :func:`dipy_test_scan` at ``size`` x ``size``: 12 simulated coils, 12 ACS lines per
    128 pixels, 30 dB (``benchmarks/disinr_mri_dipy.py`` simulates its pre-training phantoms the same way)."""
    return MRISimulation(coils=12, acs=12 * size // 128, snr_db=30.0)


def dipy_test_scan(size: int, af: float, pattern: Pattern = "cartesian"):
    """The dipy T1 slice as the MRI benchmarks' test scan (``benchmarks/disinr_mri_dipy.py``,
    ``benchmarks/ngp_seeds.py``): block-averaged to ``size`` x ``size`` (256: as it is), acquired as
    :func:`dipy_test_simulation` says, noise (and Poisson mask) seed 100. Raises where the slice is not in the
    data folder."""
    if not shared.available(shared.DIPY_T1):
        raise InreconError(
            f"the dipy T1 slice is not in {data_root()}", "set INRECON_DATA to the shared data folder"
        )
    full = np.asarray(shared.dipy_t1(), dtype=np.float64)
    f = full.shape[0] // size
    img = full.reshape(size, f, size, f).mean((1, 3))
    return mri_scans([img], dipy_test_simulation(size), af, seed0=100, pattern=pattern)[0]


def mri_pretrain_images(shape: tuple[int, int], n: int, stack: str | Path | None = None) -> list[np.ndarray]:
    """DisINR's MRI pre-training images: ``n`` T2-like brain phantoms of ``shape``, or, with ``stack``, the
    magnitude images of that ``.npy`` file ``(N, *shape)`` (e.g. slices of a T1 template written by
    ``benchmarks/volume_slices.py``) as float64. Raises before any work for a stack of another shape or with
    non-finite values."""
    if stack is None:
        return [brain_phantom(shape, seed=s, contrast="t2") for s in range(n)]
    arr = np.load(stack)
    if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(shape):
        raise InreconError(
            f"{stack}: an image stack of shape {tuple(arr.shape)}, not (N, {shape[0]}, {shape[1]})",
            f"write {shape[0]} x {shape[1]} images (volume_slices.py --canvas / --block)",
        )
    if not np.isfinite(arr).all():
        raise InreconError(f"{stack}: the image stack has NaN or infinite values", "write finite images")
    return list(np.abs(arr).astype(np.float64))


def mri_images(p: Subjects, log: Log) -> tuple[list, list, list, str]:
    """T2-like brain phantoms (pre-training, in-domain test) and FLAIR-like ones (out of domain; the last is
    the real T1 slice when present and of the right size)."""
    n = p.size
    pre = [brain_phantom((n, n), seed=s, contrast="t2") for s in range(p.n_pretrain)]
    test = [brain_phantom((n, n), seed=500 + s, contrast="t2") for s in range(p.n_test)]
    ood = [brain_phantom((n, n), seed=900 + s, contrast="flair") for s in range(p.n_test)]
    note = (
        f"Data: brain phantoms, {n}x{n}: pre-training on {len(pre)} T2-like subjects; in-domain test: T2-like; "
        "out-of-domain: FLAIR-like contrast."
    )
    if p.real and shared.available(shared.DIPY_T1):
        img = shared.dipy_t1()
        if img.shape == (n, n):
            ood = [*ood[:-1], img]
            note += " The last out-of-domain case is the real T1 slice (dipy)."
    return pre, test, ood, note


# --- pre-training and the method line-up ----------------------------------------------------------------
class Pretrainer:
    """Pre-trains the population models of one report into ``OUT/models/`` and remembers their wall times.

    With ``cfg.resume``, a model whose key file (``NAME.key.json``: a hash of the method, its settings, the
    subjects' data and the library versions) matches is read back instead of pre-trained again, and a
    pre-training killed half-way resumes from its checkpoint in ``models/.checkpoints/NAME-KEY`` (removed once
    the model is written; a folder of the same model with another key is removed before it starts)."""

    def __init__(self, cfg: Pretraining, out: Path, show_progress, log: Log | None = None):
        if not isinstance(cfg, Running):
            raise TypeError(f"{type(cfg).__name__} has no Running settings (jobs, resume)")
        self.cfg, self.out, self.show_progress, self.log = cfg, Path(out), show_progress, log
        self.seconds: dict[str, float] = {}

    def __call__(self, method: str, scans, tag: str, extra: dict | None = None) -> Path:
        """Pre-train ``method`` on ``scans``; the model file is ``models/{method}_{tag}.safetensors``."""
        over = {"seed": 0, **self.cfg.arch.overrides(), **(extra or {})}
        if method == "meta":
            if not isinstance(self.cfg, MetaPretraining):
                raise TypeError(f"{type(self.cfg).__name__} has no Meta pre-training settings")
            over.update(outer_steps=self.cfg.meta_outer_steps, inner_steps=self.cfg.meta_inner_steps)
        else:
            over.update(steps=self.cfg.pretrain_steps, subjects_per_step=self.cfg.subjects_per_step)
        path = self.out / "models" / f"{method}_{tag}.safetensors"
        names = [f"{tag}-{i}" for i in range(len(scans))]
        keyfile = path.with_name(f"{path.stem}.key.json")
        key = _pretraining_key(method, over, scans, names)
        if self.cfg.resume and path.exists():
            done = _read_key(keyfile)
            if done.get("key") == key:
                if self.log is not None:
                    self.log(f"  {path.name}: read back (pre-trained by an earlier run with these settings)")
                self.seconds[path.stem] = float(done.get("seconds", 0.0))
                return path
        # one checkpoint folder per key: a killed pre-training with other settings is never resumed into this one
        ckroot = self.out / "models" / ".checkpoints"
        ckdir = ckroot / f"{path.stem}-{key}"
        for old in ckroot.glob(f"{path.stem}-*"):
            if old != ckdir or not self.cfg.resume:
                shutil.rmtree(old, ignore_errors=True)
        t0 = time.perf_counter()
        pretrain(
            method, scans, path, over, names=names, show_progress=self.show_progress, checkpoint_dir=ckdir
        )
        self.seconds[path.stem] = time.perf_counter() - t0
        write_json(keyfile, {"key": key, "seconds": self.seconds[path.stem]})
        shutil.rmtree(ckdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            ckdir.parent.rmdir()  # the checkpoints' folder, once no pre-training is left in it
        return path

    def all(self, methods: Sequence[str], scans, tag: str) -> dict[str, Path]:
        """``{method: model file}`` for each of ``methods``, pre-trained on ``scans``."""
        return {m: self(m, scans, tag) for m in methods}

    def add_bars(self, rep: Report) -> None:
        rep.add_bars("Pre-training time", dict(self.seconds), ylabel="seconds")


def _pretraining_key(method: str, over: dict, scans, names: list[str]) -> str:
    """What determines a pre-trained model: the method, its resolved settings (a changed default counts), the
    subjects' data, the versions."""
    settings = METHODS.resolve(method).pretrain.build(scans[0].modality if len(scans) else None, over)
    return config_fingerprint(
        {
            "method": method,
            "settings": config_to_dict(settings),
            "subjects": [scan_identity(s) for s in scans],
            "names": names,
            "versions": {"inrecon": __version__, "torch": torch.__version__},
        }
    )


def _read_key(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def method_runs(
    cfg: Fitting, arch: HashArch, models: dict[str, Path], methods: Sequence[str]
) -> list[MethodRun]:
    """The comparison's columns for ``methods`` (population methods only where a model was pre-trained)."""
    inr = cfg.inr_overrides()
    over = {"ngp": {**inr, **arch.overrides()}, "imjense": dict(inr), "saxnerf": dict(inr)}
    runs = []
    for m in methods:
        if m in ("meta", "strainer", "disinr"):
            if m in models:
                runs.append(MethodRun(_LABELS[m], m, dict(inr), model=str(models[m])))
        else:
            runs.append(MethodRun(_LABELS[m], m, over.get(m, {})))
    return runs


def section(rep: Report, title: str, comp: Comparison, case: str | None = None) -> list[dict]:
    """The mean ± std table of ``comp``, one case's images and its training curves; returns the table."""
    table = aggregate(comp.rows(), by="method", metrics=("psnr", "ssim", "nrmse", "seconds"))
    rep.add_table(
        title, table, columns=["method", "psnr", "ssim", "nrmse", "seconds", "n"], best=QUALITY_BEST
    )
    case = case or next(iter(comp.references))
    rep.add_image_grid(
        f"{title}: {case}", comp.images(case), reference=comp.references[case], metrics=comp.metrics_for(case)
    )
    curves = comp.curves(case)
    if curves:
        rep.add_curves(f"{title}: PSNR during the final fit ({case})", curves)
    return table


def compare(cases, runs: Sequence[MethodRun], cfg: Running, out: Path, show_progress, log: Log) -> Comparison:
    """:func:`~inrecon.experiments.runner.run_comparison` of ``cases`` x ``runs`` in ``cfg.jobs`` local worker
    processes (one: in this process), each finished pair kept in ``OUT/pairs`` (and, with ``cfg.resume``, those
    an earlier run finished read back from there)."""
    with Runner(cfg.jobs) as runner:
        return run_comparison(
            cases,
            runs,
            show_progress=show_progress,
            log=log,
            runner=runner,
            store=Path(out) / "pairs",
            resume=cfg.resume,
        )


def domain_sections(
    rep: Report,
    setting: str,
    domains: dict[str, list],
    runs: list[MethodRun],
    cfg: Running,
    out: Path,
    show_progress,
    log: Log,
) -> list[dict]:
    """One :func:`section` per domain (``{domain: scans}``, cases named ``domain-1`` ...); returns the summary
    rows (``setting`` + domain, then each method's means)."""
    summary = []
    for domain, scans in domains.items():
        cases = [(f"{domain}-{i + 1}", s) for i, s in enumerate(scans)]
        comp = compare(cases, runs, cfg, out, show_progress, log)
        table = section(rep, f"{setting}, {domain}", comp)
        summary += [{"setting": f"{setting} {domain}", **row} for row in table]
    return summary


def pretrain_and_compare(
    rep: Report,
    cfg,
    pretrain: Pretrainer,
    images: Sequence[list],
    settings: Sequence[tuple[tuple[str, str, str], Callable[[list, int], list]]],
    show_progress,
    log: Log,
) -> Iterator[tuple[list[MethodRun], list[dict]]]:
    """The acquisition settings of Tables 2 and 3, one after the other: for each ``(names, simulate)`` of
    ``settings``, pre-train ``cfg.pretrain_methods`` on ``simulate(pre, 0)`` and compare ``cfg.methods`` on
    ``simulate(test, 100)`` and ``simulate(ood, 100)`` (``images`` holds the pre-training, in-domain and
    out-of-domain images; ``names`` = (log label, section setting, model tag)). Yields the method runs and the
    summary rows of each setting."""
    pre, test, ood = images
    for (label, setting, tag), simulate in settings:
        log(f"[{label}] pre-training on {len(pre)} subjects")
        models = pretrain.all(cfg.pretrain_methods, simulate(pre, 0), tag)
        runs = method_runs(cfg, cfg.arch, models, cfg.methods)
        domains = {"in-domain": simulate(test, 100), "out-of-domain": simulate(ood, 100)}
        yield runs, domain_sections(rep, setting, domains, runs, cfg, pretrain.out, show_progress, log)


def new_report(title: str, note: str) -> Report:
    """An empty report with its data note and the machine recorded."""
    return set_environment(Report(title=title, data_note=note))
