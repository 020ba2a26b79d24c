"""How a method plugs into bilevel tuning.

A method declares a :class:`Tunable` (in its registry entry):

``space``
    a :class:`~inrecon.tuning.bo.SearchSpace` whose names are keys of the method's config (dotted or the
    short flat keys, e.g. ``lr``, ``wd_enc``, ``delta``, ``per_level_scale``);
``objective(scan, cfg, space, *, oracle, show_progress, model) -> objective``
    builds ``objective(h) -> (score, info)`` (lower is better). ``info`` must hold ``chosen_steps`` (the steps
    the final fit runs); only scalar entries survive the trial log;
``apply(cfg, h, info) -> dict``
    the config overrides of the method's *final* reconstruction for the best ``h`` and its trial info;
    :func:`final_overrides` is the one every INR method uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inrecon.config import canonical_keys, config_diff, override_config
from inrecon.errors import InreconError
from inrecon.tuning.bo import Objective, SearchSpace

__all__ = ["Tunable", "apply_h", "final_overrides"]


@dataclass(frozen=True)
class Tunable:
    """A method's search space, objective factory and final-config rule (module docstring)."""

    space: SearchSpace
    objective: Callable[..., Objective]
    apply: Callable[[Any, dict, dict], dict]


def apply_h(cfg: Any, h: dict) -> Any:
    """``cfg`` with the keys of ``h`` set (unknown names raise before any work)."""
    return override_config(cfg, h)


def final_overrides(cfg: Any, h: dict, info: dict) -> dict:
    """Overrides of the final fit of an INR method: every setting of ``cfg`` that differs from the method's
    defaults, the tuned ``h``, the chosen step count and ``stop.rule = none`` (the tuned step count replaces
    the hold-out rule: it is what the hold-out chose for ``h``, and transfer to another scan of the same
    protocol keeps it, as the Bilevel paper keeps a fixed iteration count). Applied to the method's defaults,
    they reproduce the tuned reconstruction exactly. The prior weights the trials ran with
    (``info["prior_tv"]``, ``info["prior_phase"]``; chosen once before the search when the config says
    ``"auto"``) are fixed too."""
    if info.get("chosen_steps") is None:
        raise InreconError(
            "the best trial recorded no chosen step count", "re-run the tuning (its log is stale)"
        )
    tuned = canonical_keys(type(cfg), h)
    out = {**config_diff(cfg), **tuned, "optim.steps": int(info["chosen_steps"]), "stop.rule": "none"}
    for term in ("tv", "phase"):
        if info.get(f"prior_{term}") is not None:
            out[f"prior.{term}"] = float(info[f"prior_{term}"])
    return out
