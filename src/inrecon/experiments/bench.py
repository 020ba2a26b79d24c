"""``inrecon bench NAME``: named experiments that reproduce the papers' tables and figures on our data.

Each experiment is a JSON file in ``inrecon/configs/bench/`` -- ``{"name", "kind", "description", "params",
"quick"}`` -- naming a driver (``"kind"``, a key of :data:`~inrecon.experiments.drivers.DRIVERS`) and its
parameters; the ``"quick"`` block holds overrides that shrink it (fewer subjects, smaller images, fewer steps)
for a CPU. Parameters are read into the driver's typed config with :func:`~inrecon.config.build_config`:
``params``, then ``quick``, then the caller's overrides (``--set``), later layers winning key by key (a nested
object overrides only the keys it names; a list replaces the list). An unknown key or a bad value is refused
before any work. The driver returns a :class:`~inrecon.report.Report`; results go to ``OUT/NAME/`` as
``report.html`` (+ figures), ``report.md`` and ``report.json``. Real data from ``INRECON_DATA`` is used where
the experiment can use it and is present; otherwise phantoms, and the report's data note says which.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from inrecon import __version__
from inrecon.config import build_config, canonical_keys, config_to_dict
from inrecon.errors import InreconError

__all__ = ["Experiment", "available_experiments", "load_experiment", "run_bench"]


@dataclass(frozen=True)
class Experiment:
    """A loaded experiment: its ``name``, driver ``kind``, ``description``, whether the ``quick`` profile is
    applied, and ``config``, the driver's typed config."""

    name: str
    kind: str
    description: str
    quick: bool
    config: Any


def _drivers() -> dict:
    """:data:`~inrecon.experiments.drivers.DRIVERS`, imported on first use (listing the experiments needs
    neither torch nor the methods)."""
    from inrecon.experiments.drivers import DRIVERS

    return DRIVERS


def _config_dir():
    return resources.files("inrecon") / "configs" / "bench"


def available_experiments() -> dict[str, str]:
    """``{name: description}`` of the bundled experiments."""
    out = {}
    for f in sorted(_config_dir().iterdir(), key=lambda p: p.name):
        if f.name.endswith(".json"):
            out[f.name[:-5]] = json.loads(f.read_text()).get("description", "")
    return out


def _read(name_or_path: str) -> tuple[dict, str]:
    """The experiment file's contents and its stem (a bundled name or a path to a JSON file)."""
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return json.loads(p.read_text()), p.stem
    f = _config_dir() / f"{name_or_path}.json"
    if not f.is_file():
        raise InreconError(
            f"unknown bench experiment {name_or_path!r}",
            f"choose one of: {', '.join(available_experiments())} (or pass a JSON file)",
        )
    return json.loads(f.read_text()), name_or_path


def _keys(cls: type) -> str:
    """The config's keys for an error message (a section as ``name.KEY``)."""
    out = []
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        out.append(f"{f.name}.KEY" if dataclasses.is_dataclass(default) else f.name)
    return ", ".join(out)


def _refused(name: str, where: str, cls: type, exc: InreconError) -> InreconError:
    fix = exc.fix
    if not fix or "inrecon methods" in fix:
        fix = f"the keys of {cls.__name__} are: {_keys(cls)}"
    return InreconError(f"experiment {name!r} ({where}): {exc.problem}", fix)


def load_experiment(
    name_or_path: str, quick: bool = False, overrides: Mapping[str, Any] | None = None
) -> Experiment:
    """The experiment (a bundled name or a path to a JSON file) with its typed config: ``params``, then
    ``quick`` when asked, then ``overrides`` (module docstring). Raises :class:`InreconError` for an unknown
    experiment, driver, key or a bad value, before any work."""
    raw, stem = _read(name_or_path)
    name = str(raw.get("name", stem))
    kind = raw.get("kind")
    drivers = _drivers()
    if kind not in drivers:
        raise InreconError(
            f"experiment {name!r} uses an unknown driver {kind!r}",
            f"known drivers: {', '.join(sorted(drivers))}",
        )
    cls = drivers[kind][0]
    layers = [("params", raw.get("params") or {})]
    if quick:
        layers.append(("quick", raw.get("quick") or {}))
    layers.append(("--set", overrides or {}))
    values: dict[str, Any] = {}
    for where, layer in layers:
        try:
            values.update(canonical_keys(cls, layer))
        except InreconError as exc:
            raise _refused(name, where, cls, exc) from None
    try:
        cfg = build_config(cls, values)
    except InreconError as exc:
        raise _refused(name, "config", cls, exc) from None
    return Experiment(name, kind, str(raw.get("description", "")), bool(quick), cfg)


def run_bench(
    name: str,
    quick: bool = False,
    out_dir: str | Path = "inrecon-bench",
    show_progress=None,
    log=print,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Run one experiment (its config checked first); returns the report's path."""
    exp = load_experiment(name, quick, overrides)
    run = _drivers()[exp.kind][1]
    out = Path(out_dir) / exp.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"bench {exp.name}{' (quick)' if quick else ''}: {exp.description}")
    rep = run(exp.config, out, show_progress, log)
    snapshot = {
        "name": exp.name,
        "kind": exp.kind,
        "description": exp.description,
        "params": config_to_dict(exp.config),
        "quick": exp.quick,
        "inrecon_version": __version__,
    }
    rep.add_config("Experiment", snapshot)
    path = rep.write(out)
    log(f"{exp.name}: {time.perf_counter() - t0:.0f} s, report {path}")
    return path
