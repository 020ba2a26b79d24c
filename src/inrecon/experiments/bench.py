"""``inrecon bench NAME``: named experiments that reproduce the papers' tables and figures on our data.

Each experiment is a JSON file in ``inrecon/configs/bench/`` naming a driver (``"kind"``) and its parameters; a
``"quick"`` block holds overrides that shrink it (fewer subjects, smaller images, fewer steps) for a CPU. The
driver returns a :class:`~inrecon.report.Report`; results go to ``OUT/NAME/`` as ``report.html`` (+ figures),
``report.md`` and ``report.json``. Real data from ``INRECON_DATA`` is used where the experiment can use it and
is present; otherwise phantoms, and the report's data note says which.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from inrecon import __version__
from inrecon.errors import InreconError

__all__ = ["DRIVERS", "available_experiments", "load_experiment", "run_bench"]

DRIVERS: dict[str, Callable] = {}


def driver(kind: str):
    """Register a bench driver ``fn(params: dict, out: Path, show_progress, log) -> Report``."""

    def deco(fn):
        DRIVERS[kind] = fn
        return fn

    return deco


def _config_dir():
    return resources.files("inrecon") / "configs" / "bench"


def available_experiments() -> dict[str, str]:
    """``{name: description}`` of the bundled experiments."""
    out = {}
    for f in sorted(_config_dir().iterdir(), key=lambda p: p.name):
        if f.name.endswith(".json"):
            out[f.name[:-5]] = json.loads(f.read_text()).get("description", "")
    return out


def load_experiment(name_or_path: str, quick: bool = False) -> dict:
    """The experiment's parameters (a bundled name or a path to a JSON file), with ``quick`` applied."""
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        cfg = json.loads(p.read_text())
    else:
        f = _config_dir() / f"{name_or_path}.json"
        if not f.is_file():
            raise InreconError(
                f"unknown bench experiment {name_or_path!r}",
                f"choose one of: {', '.join(available_experiments())} (or pass a JSON file)",
            )
        cfg = json.loads(f.read_text())
    params = dict(cfg.get("params", {}))
    if quick:
        params.update(cfg.get("quick", {}))
    return {
        "name": cfg.get("name", p.stem),
        "kind": cfg["kind"],
        "description": cfg.get("description", ""),
        "params": params,
        "quick": quick,
    }


def run_bench(
    name: str,
    quick: bool = False,
    out_dir: str | Path = "inrecon-bench",
    show_progress=None,
    log=print,
    overrides: dict | None = None,
) -> Path:
    """Run one experiment; returns the report's path."""
    import inrecon.experiments.drivers  # noqa: F401  (registers the drivers)

    exp = load_experiment(name, quick)
    exp["params"].update(overrides or {})
    if exp["kind"] not in DRIVERS:
        raise InreconError(
            f"experiment {name!r} uses an unknown driver {exp['kind']!r}",
            f"known drivers: {', '.join(sorted(DRIVERS))}",
        )
    out = Path(out_dir) / exp["name"]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"bench {exp['name']}{' (quick)' if quick else ''}: {exp['description']}")
    rep = DRIVERS[exp["kind"]](exp["params"], out, show_progress, log)
    rep.add_config("Experiment", {**exp, "inrecon_version": __version__})
    path = rep.write(out)
    log(f"{exp['name']}: {time.perf_counter() - t0:.0f} s, report {path}")
    return path
