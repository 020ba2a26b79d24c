"""A small, resumable Bayesian-optimisation tuner (the upper level of the bilevel method, METHODS.md section 4).

:func:`tune` minimises (or maximises) a black-box ``objective(h) -> (score, info)`` over a box of named real
parameters (:class:`SearchSpace`):

1. ``n_random`` initial points: a scrambled Sobol sequence in the unit cube (seeded), mapped to the parameters.
2. ``n_guided`` points proposed by Bayesian optimisation: a BoTorch ``SingleTaskGP`` on the unit-cube inputs
   (``Normalize`` input transform with the unit bounds) with standardised outputs (``Standardize``), its
   hyperparameters fitted with ``fit_gpytorch_mll``, and the next point the maximiser over the unit cube
   (``optimize_acqf``) of ``UpperConfidenceBound(beta=kappa**2)``, i.e. ``mean + kappa * std`` of the GP on the
   *negated* score when minimising. Every proposal runs under ``torch.random.fork_rng`` seeded by
   ``(seed, trial index)``, so it depends only on the seed and the trials before it.

Diverged trials. A non-finite score (NaN/inf: a lower-level fit that blew up) is recorded as such (``score:
null, finite: false``) and never chosen as best. The GP is given a finite stand-in: the worst finite score plus
the spread (worst - best) of the finite scores, or plus ``|worst|`` (1 if that is 0) when all finite scores are
equal. So the surrogate learns "bad here" without an infinite value wrecking the standardisation. A guided
trial with fewer than two finite scores so far falls back to the next Sobol point (recorded as phase
``random``).

Trial log. With ``log_path``, one JSON object per line: a header (``type: header``, the fingerprint of the search
space, objective identity, seed, kappa and direction), then one ``type: trial`` line per finished trial
(``index``, ``phase`` random|guided, ``x`` unit-cube point, ``h``, ``score``, ``finite``, ``info`` summary (its
scalar entries), ``seconds``, ``gp_warnings``), appended, flushed and fsynced as each trial finishes. When the
file exists, :func:`tune` re-uses every finished trial and continues; because proposals depend only on the
seed and the recorded trials, an interrupted run continued from its log proposes exactly what the
uninterrupted run would have. A log whose fingerprint differs (other space, objective, seed, kappa or
direction) is refused. The budget (``n_random``, ``n_guided``) is not part of the fingerprint: a finished run
can be extended with more guided trials. A trial interrupted mid-way is re-run from its start; a torn last line
(a kill during the write) is dropped.

Parallel trials (``workers=N``). Trials run in batches of N: the random phase in batches of N Sobol points
(counted from trial 0), the guided phase in batches of N counted from trial ``n_random`` (a batch never mixes
the two). A guided batch is the joint maximiser of BoTorch's ``qUpperConfidenceBound`` with the same ``beta =
kappa**2`` on the same GP, fitted to the trials before the batch; for one point qUCB is the UCB above, so it is
the q-point form of the sequential rule (the batch spreads out by itself, as jointly optimised points of one
GP posterior do, without the pending points' scores). The proposal is seeded by ``(seed, first index of the
batch)``, so it again depends only on the seed, N and the trials before it. Records go to the log in index
order as soon as every earlier trial of the batch is in; a batch interrupted half-way is proposed again from
the same trials (the same points) and only its unlogged trials are re-run. N is not fingerprinted: a log can
be continued with another N (later batches follow the new N). ``workers=1`` is the sequential loop, unchanged.

Why BoTorch q-batch rather than Ray Tune with a BO searcher: the trial log above stays the one record (Ray
Tune keeps its own experiment state and trial directories, a second log format to resume from and keep
consistent with this one); proposals stay deterministic and resumable from that log (a Tune searcher's
proposals depend on the order results arrive in); Ray stays optional (a 240 MB install, about 5 s to start a
local cluster on the reference machine, against 2 s for a spawned worker), and the same q-batch loop runs its
batches in local processes or, with ``--ray``, as Ray tasks through :class:`~inrecon.parallel.Runner`.
Trials here last seconds to minutes and a batch of N waits for its slowest trial; an asynchronous scheduler
would save that wait but give up the determinism above.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inrecon.data.atomic import atomic_path
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.errors import InreconError
from inrecon.progress import progress_enabled

__all__ = ["Objective", "Param", "SearchSpace", "TuneResult", "read_log", "tune"]

Objective = Callable[[dict], tuple[float, dict]]
"""``objective(h) -> (score, info)``: ``h`` maps parameter names to values; ``info`` is free-form (its scalar
entries are logged)."""

_LOG_VERSION = 1
_QMC_SAMPLES = 256  # quasi-Monte-Carlo samples of the qUCB estimate (q > 1)


@dataclass(frozen=True)
class Param:
    """One real parameter on ``[low, high]``.

    With ``log=True`` the bounds are log10 bounds: the value is ``10**t`` for ``t`` in ``[low, high]`` (e.g.
    ``Param("lr", -5, -2, log=True)`` searches 1e-5 .. 1e-2 uniformly in the exponent).
    """

    name: str
    low: float
    high: float
    log: bool = False

    def validate(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise InreconError(f"parameter name {self.name!r} is empty", "give every parameter a name")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise InreconError(
                f"parameter {self.name!r} has bounds [{self.low}, {self.high}]",
                "give finite bounds with low < high (log10 bounds when log=True)",
            )

    def from_unit(self, u: float) -> float:
        """Unit-interval coordinate -> parameter value."""
        t = self.low + float(u) * (self.high - self.low)
        return float(10.0**t) if self.log else float(t)

    def to_unit(self, value: float) -> float:
        """Parameter value -> unit-interval coordinate (not clipped)."""
        v = float(value)
        if self.log:
            if not v > 0:
                raise InreconError(
                    f"{self.name}={value} must be > 0 (log parameter)", "give a positive value"
                )
            v = math.log10(v)
        return (v - self.low) / (self.high - self.low)

    def to_dict(self) -> dict:
        return {"name": self.name, "low": float(self.low), "high": float(self.high), "log": bool(self.log)}


@dataclass(frozen=True)
class SearchSpace:
    """An ordered box of named :class:`Param`; maps points to and from the unit cube ``[0, 1]^d``."""

    params: tuple[Param, ...]

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        if not self.params:
            raise InreconError("the search space has no parameters", "give at least one Param")
        for p in self.params:
            p.validate()
        names = self.names
        if len(set(names)) != len(names):
            raise InreconError(f"duplicate parameter names in {names}", "give each parameter a unique name")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def dim(self) -> int:
        return len(self.params)

    def from_unit(self, u: Sequence[float] | torch.Tensor) -> dict[str, float]:
        """A unit-cube point ``(d,)`` -> ``{name: value}``."""
        vals = [float(x) for x in (u.tolist() if isinstance(u, torch.Tensor) else u)]
        if len(vals) != self.dim:
            raise InreconError(f"point has {len(vals)} coordinates, space has {self.dim}", "check the point")
        return {p.name: p.from_unit(min(1.0, max(0.0, x))) for p, x in zip(self.params, vals)}

    def to_unit(self, h: dict[str, float]) -> list[float]:
        """``{name: value}`` -> unit-cube coordinates (a missing name raises)."""
        missing = [n for n in self.names if n not in h]
        if missing:
            raise InreconError(f"point lacks parameter(s) {missing}", f"give all of {self.names}")
        return [p.to_unit(h[p.name]) for p in self.params]

    def to_dict(self) -> dict:
        return {"params": [p.to_dict() for p in self.params]}

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        try:
            return cls(
                tuple(
                    Param(str(p["name"]), float(p["low"]), float(p["high"]), bool(p["log"]))
                    for p in d["params"]
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InreconError(
                f"search space description is malformed ({exc.__class__.__name__}: {exc})",
                'write {"params": [{"name": ..., "low": ..., "high": ..., "log": ...}, ...]}',
            ) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        return cls.from_dict(json.loads(text))


@dataclass
class TuneResult:
    """The outcome of :func:`tune`.

    Attributes
    ----------
    best_h
        The best parameters (``None`` when no trial gave a finite score).
    best_score
        Its score (NaN when none was finite).
    trials
        One dict per trial, in order (the log's trial records).
    space
        The search space.
    best_index
        Index of the best trial (``None`` when none was finite).
    seconds
        Wall time of this call (resumed trials cost nothing).
    """

    best_h: dict | None
    best_score: float
    trials: list[dict]
    space: SearchSpace
    best_index: int | None = None
    seconds: float = 0.0
    minimize: bool = True

    @property
    def best_trial(self) -> dict | None:
        return None if self.best_index is None else self.trials[self.best_index]

    @property
    def n_failed(self) -> int:
        return sum(1 for t in self.trials if not t["finite"])

    def to_dict(self) -> dict:
        return {
            "best_h": self.best_h,
            "best_score": _json_float(self.best_score),
            "best_index": self.best_index,
            "minimize": self.minimize,
            "seconds": self.seconds,
            "space": self.space.to_dict(),
            "trials": self.trials,
        }

    def to_json(self, indent: int | None = None) -> str:
        """The result as a JSON string (non-finite numbers as ``null``)."""
        return json.dumps(self.to_dict(), indent=indent)


# --- helpers --------------------------------------------------------------------------------------------------
def _json_float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _summary(info: dict) -> dict:
    """The JSON-able scalar entries of ``info`` (non-finite floats -> None); everything else is dropped."""
    out = {}
    for k, v in (info or {}).items():
        if isinstance(v, bool) or v is None or isinstance(v, str):
            out[str(k)] = v
        elif isinstance(v, int):
            out[str(k)] = int(v)
        elif isinstance(v, float) or (isinstance(v, torch.Tensor) and v.numel() == 1) or hasattr(v, "item"):
            try:
                out[str(k)] = _json_float(v.item() if hasattr(v, "item") else v)
            except (TypeError, ValueError):
                continue
    return out


def _trial_seed(seed: int, index: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * (int(index) + 1)) % (2**62)


def _sobol_point(dim: int, seed: int, index: int) -> list[float]:
    eng = torch.quasirandom.SobolEngine(dim, scramble=True, seed=int(seed))
    pts = eng.draw(index + 1, dtype=torch.float64)
    return [float(x) for x in pts[index]]


def _gp_values(trials: list[dict], minimize: bool) -> list[float]:
    """Scores as the GP sees them: maximisation targets, non-finite replaced by a penalised finite value."""
    finite = [t["score"] for t in trials if t["finite"]]
    worst = max(finite) if minimize else min(finite)
    best = min(finite) if minimize else max(finite)
    spread = abs(worst - best)
    if spread == 0.0:
        spread = abs(worst) or 1.0
    penal = worst + spread if minimize else worst - spread
    vals = [t["score"] if t["finite"] else penal for t in trials]
    return [-v for v in vals] if minimize else vals


def _propose_guided(
    trials: list[dict], dim: int, seed: int, index: int, kappa: float, minimize: bool, q: int = 1
) -> tuple[list[list[float]], list[str]]:
    """The UCB maximiser of a GP fitted to ``trials`` (``q`` > 1: the joint maximiser of qUCB, ``q`` points);
    returns ``(points, messages)`` (warnings, fit failures)."""
    X = torch.tensor([t["x"] for t in trials], dtype=torch.float64)
    Y = torch.tensor(_gp_values(trials, minimize), dtype=torch.float64).unsqueeze(-1)
    msgs: list[str] = []
    threads = torch.get_num_threads()
    # The GP is tiny (tens of points): threads only add synchronisation. Measured on 2 busy cores: a GP fit
    # took 2.8-4.3 s with 2 threads and 0.16-0.2 s with 1.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(_trial_seed(seed, index))
            cand = _fit_and_maximise(X, Y, kappa, msgs, q)
    finally:
        torch.set_num_threads(threads)
    msgs += [
        f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
        for w in caught
        if not issubclass(w.category, DeprecationWarning)  # import-time noise of gpytorch on new torch
    ]
    points = cand.reshape(q, -1)
    return [[min(1.0, max(0.0, float(v))) for v in row] for row in points], msgs


def _fit_and_maximise(
    X: torch.Tensor, Y: torch.Tensor, kappa: float, msgs: list[str], q: int = 1
) -> torch.Tensor:
    """Fit ``SingleTaskGP`` to ``(X (n, d) in the unit cube, Y (n, 1) to maximise)``; maximise its UCB (``q`` >
    1: ``qUpperConfidenceBound`` with the same ``beta``, whose value for one point is that UCB, maximised
    jointly over ``q`` points with quasi-Monte-Carlo samples)."""
    from botorch.acquisition import UpperConfidenceBound, qUpperConfidenceBound
    from botorch.exceptions import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    dim = X.shape[1]
    bounds = torch.stack([torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)])
    gp = SingleTaskGP(X, Y, input_transform=Normalize(dim, bounds=bounds), outcome_transform=Standardize(m=1))
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    try:
        fit_gpytorch_mll(mll)
    except ModelFittingError as exc:  # keep the prior hyperparameters; the proposal is still valid
        msgs.append(f"GP fit failed, default hyperparameters used: {str(exc).splitlines()[0]}")
    gp.eval()
    if q == 1:
        acq = UpperConfidenceBound(gp, beta=float(kappa) ** 2, maximize=True)
    else:
        from botorch.sampling import SobolQMCNormalSampler

        sampler = SobolQMCNormalSampler(torch.Size([_QMC_SAMPLES]), seed=int(torch.randint(2**31, ()).item()))
        acq = qUpperConfidenceBound(gp, beta=float(kappa) ** 2, sampler=sampler)
    cand, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=10, raw_samples=512)
    return cand


# --- log ------------------------------------------------------------------------------------------------------
def read_log(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """Read a trial log: ``(header, trials)``. A torn last line is ignored; other damage raises."""
    header, trials, _ = _read_log(Path(path))
    return header, trials


def _read_log(p: Path) -> tuple[dict, list[dict], bool]:
    """``(header, trials, clean)``; ``clean`` is False when a torn last line was dropped."""
    try:
        lines = p.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise InreconError(
            f"trial log {p} cannot be read ({exc.__class__.__name__})", "delete it or fix it"
        ) from None
    records = []
    clean = True
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not line.endswith("\n"):
                raise ValueError("incomplete")
        except ValueError:
            if i == len(lines) - 1:  # killed while writing the last line
                clean = False
                break
            raise InreconError(
                f"trial log {p} is damaged at line {i + 1}",
                "delete the log (its trials are lost) or repair it",
            ) from None
        records.append(rec)
    if not records or records[0].get("type") != "header":
        raise InreconError(f"{p} is not an inrecon trial log (no header line)", "give another --log path")
    trials = [r for r in records[1:] if r.get("type") == "trial"]
    for k, t in enumerate(trials):
        if t.get("index") != k or "x" not in t or "finite" not in t:
            raise InreconError(
                f"trial log {p} is damaged: trial record {k} is out of order or incomplete",
                "delete the log (its trials are lost) or repair it",
            )
    return records[0], trials, clean


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_log(path: Path, header: dict, trials: list[dict]) -> None:
    with atomic_path(path, suffix=".jsonl") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in [header, *trials]:
                f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())


# --- table ----------------------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    return "nan" if v is None or not math.isfinite(v) else f"{v:.4g}"


class _Table:
    def __init__(self, space: SearchSpace, show: bool):
        self.show = show
        self.names = space.names
        self.widths = [max(9, len(n)) for n in self.names]

    def _write(self, text: str) -> None:
        if self.show:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)

    def header(self, title: str) -> None:
        cols = " ".join(n.rjust(w) for n, w in zip(self.names, self.widths))
        self._write(title)
        self._write(f"{'#':>4} {'phase':>6} {cols} {'score':>11} {'best':>11} {'sec':>7}")

    def row(self, t: dict, best: float | None) -> None:
        cols = " ".join(_fmt(t["h"][n]).rjust(w) for n, w in zip(self.names, self.widths))
        self._write(
            f"{t['index']:>4} {t['phase']:>6} {cols} {_fmt(t['score']):>11} {_fmt(best):>11} "
            f"{t.get('seconds', 0.0):>7.1f}"
        )

    def start(
        self, trials: list[dict], n_random: int, n_guided: int, workers: int, path, minimize: bool
    ) -> None:
        """The header, then a row for every trial resumed from the log."""
        self.header(
            f"tuning {len(self.names)} parameters: {n_random} random + {n_guided} guided trials"
            + (f", {workers} at a time" if workers > 1 else "")
            + (f" ({len(trials)} resumed from {path})" if trials else "")
        )
        for k, t in enumerate(trials):
            best_idx = _best(trials[: k + 1], minimize)
            self.row(t, trials[best_idx]["score"] if best_idx is not None else None)

    def summary(self, res: TuneResult, top: int = 5) -> None:
        if not self.show:
            return
        order = sorted(
            (t for t in res.trials if t["finite"]), key=lambda t: t["score"], reverse=not res.minimize
        )
        self.header(
            f"tuning done: {len(res.trials)} trials ({res.n_failed} non-finite), best #{res.best_index} "
            f"score {_fmt(res.best_score)}; top {min(top, len(order))}:"
        )
        for t in order[:top]:
            self.row(t, res.best_score)


# --- tune -----------------------------------------------------------------------------------------------------
def _best(trials: list[dict], minimize: bool) -> int | None:
    idx = [k for k, t in enumerate(trials) if t["finite"]]
    if not idx:
        return None
    key = (lambda k: trials[k]["score"]) if minimize else (lambda k: -trials[k]["score"])
    return min(idx, key=key)


def _check_tune_args(n_random: int, n_guided: int, kappa: float) -> None:
    """Check :func:`tune`'s trial budget and ``kappa``, and that BoTorch is there for guided trials."""
    if n_random < 0 or n_guided < 0 or n_random + n_guided < 1:
        raise InreconError(
            f"trial budget n_random={n_random}, n_guided={n_guided}",
            "use n_random, n_guided >= 0 with a sum >= 1",
        )
    if not (math.isfinite(kappa) and kappa >= 0):
        raise InreconError(f"kappa={kappa}", "use a finite kappa >= 0 (e.g. 2.576)")
    if n_guided > 0 and importlib.util.find_spec("botorch") is None:
        raise InreconError(
            "guided trials need BoTorch, which is not installed",
            "pip install 'inrecon[tune]' (or botorch), or run only random trials (n_guided=0)",
        )


def _log_header(space: SearchSpace, seed: int, kappa: float, minimize: bool, objective_id: Any) -> dict:
    """The trial log's header line, with the fingerprint of the tuning run (module docstring)."""
    fp = config_fingerprint(
        {
            "space": space.to_dict(),
            "objective": objective_id,
            "seed": int(seed),
            "kappa": float(kappa),
            "minimize": bool(minimize),
        }
    )
    return {
        "type": "header",
        "version": _LOG_VERSION,
        "fingerprint": fp,
        "space": space.to_dict(),
        "seed": int(seed),
        "kappa": float(kappa),
        "minimize": bool(minimize),
        "objective": json.loads(json.dumps(objective_id, default=str)),
    }


def _open_log(path: Path, header: dict) -> list[dict]:
    """The finished trials of the log at ``path`` (checked against ``header``'s fingerprint, a torn last line
    dropped); a new log with ``header`` and no trials when there is none."""
    if not path.exists():
        _write_log(path, header, [])
        return []
    old_header, trials, clean = _read_log(path)
    if old_header.get("fingerprint") != header["fingerprint"]:
        raise InreconError(
            f"trial log {path} belongs to another tuning run (different search space, objective, data, "
            "seed, kappa or direction)",
            "give another --log path, or delete the old log to start afresh",
        )
    if not clean:  # drop the torn last line, so that appends start on a clean line
        _write_log(path, old_header, trials)
    return trials


def evaluate_point(objective: Objective, h: dict) -> tuple[float, dict, float]:
    """``objective(h)`` as ``(score as a float, info's scalar summary, seconds)``; what a worker process runs
    for one trial (module-level, so that it pickles)."""
    t0 = time.perf_counter()
    score, info = objective(dict(h))
    seconds = time.perf_counter() - t0
    return (float(score) if score is not None else math.nan), _summary(info), seconds


def _record(index: int, phase: str, x: list[float], h: dict, result, msgs: list[str]) -> dict:
    """The trial record of ``result = (score, info, seconds)``."""
    score_f, info, seconds = result
    finite = math.isfinite(score_f)
    return {
        "type": "trial",
        "index": index,
        "phase": phase,
        "x": x,
        "h": h,
        "score": score_f if finite else None,
        "finite": finite,
        "score_text": None if finite else str(score_f),
        "info": _summary(info),
        "seconds": seconds,
        "gp_warnings": msgs,
    }


def _run_trial(
    objective: Objective,
    space: SearchSpace,
    trials: list[dict],
    index: int,
    n_random: int,
    seed: int,
    kappa: float,
    minimize: bool,
) -> dict:
    """Propose trial ``index`` (Sobol, or GP-UCB once past ``n_random`` with two finite scores), evaluate the
    objective there and return the trial record."""
    msgs: list[str] = []
    n_finite = sum(1 for t in trials if t["finite"])
    if index < n_random or n_finite < 2:
        phase, x = "random", _sobol_point(space.dim, seed, index)
    else:
        phase = "guided"
        (x,), msgs = _propose_guided(trials, space.dim, seed, index, kappa, minimize)
    h = space.from_unit(x)
    return _record(index, phase, x, h, evaluate_point(objective, h), msgs)


def _batch_of(index: int, n_random: int, budget: int, workers: int) -> tuple[int, int]:
    """``(start, stop)`` of the batch that holds trial ``index``: batches of ``workers`` trials counted from 0
    in the random phase and from ``n_random`` in the guided one (a batch never spans both)."""
    base, end = (0, n_random) if index < n_random else (n_random, budget)
    start = base + (index - base) // workers * workers
    return start, min(start + workers, end)


def _propose_batch(
    space: SearchSpace,
    before: list[dict],
    start: int,
    stop: int,
    n_random: int,
    seed: int,
    kappa: float,
    minimize: bool,
) -> list[tuple[str, list[float], list[str]]]:
    """``(phase, x, messages)`` of trials ``start .. stop-1``, from the trials ``before`` the batch only: Sobol
    points in the random phase (or with fewer than two finite scores), else the joint qUCB maximiser."""
    n_finite = sum(1 for t in before if t["finite"])
    if start < n_random or n_finite < 2:
        return [("random", _sobol_point(space.dim, seed, i), []) for i in range(start, stop)]
    xs, msgs = _propose_guided(before, space.dim, seed, start, kappa, minimize, q=stop - start)
    return [("guided", x, msgs) for x in xs]


def _evaluate_batch(objective: Objective | None, hs: list[dict], runner):
    """``(position, Outcome)`` of each point as it finishes: in this process in order (an exception of the
    objective propagates), or by ``runner`` (a :class:`~inrecon.parallel.Runner`) in its workers."""
    from inrecon.parallel import Outcome

    if runner is None:
        for k, h in enumerate(hs):
            yield k, Outcome(True, evaluate_point(objective, h))
    else:
        yield from runner.run(evaluate_point, hs)


def _run_batch(objective, space, trials, n_random, budget, workers, seed, kappa, minimize, runner, finished):
    """Propose and evaluate the batch that holds the next trial; hand its records to ``finished`` in index
    order as soon as every earlier one is in (a trial that failed with an exception stops the run after the
    trials before it are logged)."""
    start, stop = _batch_of(len(trials), n_random, budget, workers)
    proposals = _propose_batch(space, trials[:start], start, stop, n_random, seed, kappa, minimize)
    first = len(trials)  # > start when resuming inside a batch: its finished trials are kept
    points = [(i, *proposals[i - start]) for i in range(first, stop)]
    hs = [space.from_unit(x) for _, _, x, _ in points]
    done: dict[int, dict] = {}
    errors: dict[int, str] = {}
    for k, outcome in _evaluate_batch(objective, hs, runner):
        index, phase, x, msgs = points[k]
        if outcome.ok:
            done[index] = _record(index, phase, x, hs[k], outcome.value, msgs)
        else:
            errors[index] = outcome.error
        while len(trials) in done:
            finished(done.pop(len(trials)))
    if errors:
        index = min(errors)
        raise InreconError(
            f"tuning trial {index} failed: {errors[index]}",
            "fix the cause and run the same command again: the finished trials are kept in the log",
        )


def tune(
    objective: Objective,
    space: SearchSpace,
    *,
    n_random: int = 20,
    n_guided: int = 40,
    seed: int = 0,
    kappa: float = 2.576,
    minimize: bool = True,
    log_path: str | os.PathLike | None = None,
    show_progress: bool | None = None,
    objective_id: Any = None,
    workers: int = 1,
    runner=None,
) -> TuneResult:
    """Optimise ``objective`` over ``space`` (module docstring): Sobol start, then GP-UCB.

    Parameters
    ----------
    objective
        ``h -> (score, info)``; ``score`` a float (non-finite allowed: a failed trial).
    space
        The :class:`SearchSpace`.
    n_random, n_guided
        Number of initial (Sobol) and guided (GP-UCB) trials.
    seed
        Seeds the Sobol scrambling and every proposal.
    kappa
        UCB exploration weight (``beta = kappa**2``; the paper's 2.576).
    minimize
        Minimise (default) or maximise the score.
    log_path
        JSON-lines trial log, resumed when it exists (module docstring).
    show_progress
        Print a line per finished trial and a final table on stderr (default: when stderr is a terminal).
    objective_id
        JSON-able identity of the objective (e.g. method config + data hash) for the log's fingerprint.
    workers
        Trials proposed and evaluated at a time (module docstring, "Parallel trials"); 1: one after another,
        exactly as without it.
    runner
        A :class:`~inrecon.parallel.Runner` whose workers evaluate each batch (built with a factory of the
        objective as its context; ``objective`` is then unused); ``None``: this process evaluates them.

    Returns
    -------
    TuneResult
    """
    n_random, n_guided, workers = int(n_random), int(n_guided), int(workers)
    _check_tune_args(n_random, n_guided, kappa)
    if workers < 1:
        raise InreconError(f"workers={workers}", "use workers >= 1")
    t_start = time.perf_counter()
    header = _log_header(space, seed, kappa, minimize, objective_id)
    path = Path(log_path) if log_path is not None else None
    trials = _open_log(path, header) if path is not None else []
    budget = n_random + n_guided
    trials = trials[:budget]
    table = _Table(space, progress_enabled(show_progress))
    table.start(trials, n_random, n_guided, workers, path, minimize)

    def finished(rec: dict) -> None:
        if path is not None:
            _append(path, rec)
        trials.append(rec)
        best_idx = _best(trials, minimize)
        table.row(rec, trials[best_idx]["score"] if best_idx is not None else None)

    if workers == 1 and runner is None:
        for index in range(len(trials), budget):
            finished(_run_trial(objective, space, trials, index, n_random, seed, kappa, minimize))
    while len(trials) < budget:
        _run_batch(
            objective, space, trials, n_random, budget, workers, seed, kappa, minimize, runner, finished
        )
    best_idx = _best(trials, minimize)
    result = TuneResult(
        best_h=None if best_idx is None else dict(trials[best_idx]["h"]),
        best_score=math.nan if best_idx is None else trials[best_idx]["score"],
        trials=trials,
        space=space,
        best_index=best_idx,
        seconds=time.perf_counter() - t_start,
        minimize=minimize,
    )
    table.summary(result)
    return result
