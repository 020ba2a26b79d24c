"""What every reconstruction method shares: its result type, its config handling, and the registry.

A method is a function ``fn(scan, cfg, *, show_progress=None) -> ReconResult`` with a config dataclass whose
defaults come from METHODS.md. :func:`register` adds it to :data:`METHODS`; :func:`run_method` resolves a
config from overrides (``--set key=value`` on the command line), checks the scan's modality *before* any work,
runs it and records the wall time.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from inrecon.errors import InreconError

__all__ = [
    "METHODS",
    "MethodSpec",
    "ReconResult",
    "config_from_dict",
    "get_method",
    "register",
    "resolve_method",
    "run_method",
]


@dataclass
class ReconResult:
    """A reconstruction and what produced it.

    Attributes
    ----------
    image
        The reconstruction on the scan's image grid: complex for MRI, real for CT and volumes.
    method
        Registered method name.
    config
        The resolved config as a plain dict (written beside every output).
    info
        Wall time (``seconds``), iterations, weights chosen automatically, histories, ...
    """

    image: torch.Tensor
    method: str
    config: dict
    info: dict = field(default_factory=dict)


@dataclass
class MethodSpec:
    name: str
    fn: Callable[..., ReconResult]
    config_cls: type
    modalities: tuple[str, ...]
    description: str
    needs_model: bool = False


METHODS: dict[str, MethodSpec] = {}
# (alias, modality) -> registered name: lets one user-facing name (e.g. "tv") mean the MRI or the CT method
ALIASES: dict[tuple[str, str], str] = {}


def register(
    name: str,
    config_cls: type,
    modalities: tuple[str, ...],
    description: str,
    needs_model: bool = False,
    aliases: tuple[str, ...] = (),
):
    """Decorator adding ``fn`` to :data:`METHODS` under ``name`` (and ``aliases`` for its modalities)."""

    def deco(fn):
        METHODS[name] = MethodSpec(name, fn, config_cls, tuple(modalities), description, needs_model)
        for alias in aliases:
            for modality in modalities:
                ALIASES[(alias, modality)] = name
        return fn

    return deco


def resolve_method(name: str, modality: str) -> MethodSpec:
    """The method ``name`` means for ``modality`` (following :data:`ALIASES`)."""
    _load_all()
    return get_method(ALIASES.get((name, modality), name))


def _load_all() -> None:
    # Importing the method modules registers them.
    from inrecon.recon import _all  # noqa: F401


def get_method(name: str) -> MethodSpec:
    _load_all()
    if name in METHODS:
        return METHODS[name]
    for (alias, _modality), target in ALIASES.items():
        if alias == name:
            return METHODS[target]  # e.g. "tv" for CT when no MRI "tv" is loaded
    raise InreconError(f"unknown method {name!r}", f"choose one of: {', '.join(sorted(METHODS))}")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except (InreconError, ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise InreconError(f"config value {key}={value!r} is not a valid {typ}", f"give {key} a {typ}")
    if origin in (tuple, list):
        seq = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        return origin(_coerce(v, inner, key) for v in seq)
    if typ is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise InreconError(f"config value {key}={value!r} is not a boolean", f"use {key}=true or {key}=false")
    if typ in (int, float, str):
        try:
            if typ is int and isinstance(value, str):
                return int(float(value)) if float(value).is_integer() else int(value)
            return typ(value)
        except (TypeError, ValueError):
            raise InreconError(
                f"config value {key}={value!r} is not a valid {typ.__name__}", f"give {key} a {typ.__name__}"
            ) from None
    return value


def config_from_dict(cls: type, values: Mapping[str, Any] | None = None):
    """Build ``cls`` (a dataclass) from defaults plus ``values``, converting strings; unknown keys raise."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InreconError(
            f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}",
            f"valid keys: {', '.join(sorted(names))}",
        )
    kwargs = {k: _coerce(v, hints[k], k) for k, v in values.items()}
    return cls(**kwargs)


def run_method(
    name: str, scan, overrides: Mapping[str, Any] | None = None, *, show_progress=None, **extra
) -> ReconResult:
    """Resolve ``name``'s config from ``overrides``, check the scan's modality, run it, time it."""
    get_method(name)  # unknown names fail first
    spec = resolve_method(name, scan.modality)
    name = spec.name
    if scan.modality not in spec.modalities:
        raise InreconError(
            f"method {name!r} reconstructs {'/'.join(spec.modalities)} data, but the scan is {scan.modality}",
            f"choose a method for {scan.modality}: "
            + ", ".join(sorted(m for m, s in METHODS.items() if scan.modality in s.modalities)),
        )
    cfg = config_from_dict(spec.config_cls, overrides)
    t0 = time.perf_counter()
    result = spec.fn(scan, cfg, show_progress=show_progress, **extra)
    result.info.setdefault("seconds", time.perf_counter() - t0)
    result.config = dataclasses.asdict(cfg)
    result.method = name
    return result
