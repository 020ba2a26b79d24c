"""Typed, nested configs declared once: defaults, documentation, constraints and overrides.

A config is a dataclass. Each field is documented by a string literal right under it (the nerfstudio style),
constrained through :data:`typing.Annotated` (``steps: PosInt = 2000``) or a :data:`typing.Literal` of choices,
and may itself be a config (a nested section, ``optim.lr``). From that one declaration this module derives:

- :func:`build_config` -- a config from defaults plus overrides given as dotted keys (``optim.lr``), as the
  short flat keys users already type (``lr``: every leaf name that is unique in the tree, plus the aliases a
  class declares in ``ALIASES``), or as nested mappings; string values are converted to the field's type.
  Unknown keys, values of the wrong type and values out of range raise :class:`~inrecon.errors.InreconError`
  naming the key and what it accepts, before any work starts.
- :func:`validate_config` -- the range checks for a config built in Python (``NGPConfig(...)``).
- :func:`describe_config` -- one row per leaf (key, type, default, doc, aliases) for ``inrecon methods`` and
  ``--help``.
- :func:`config_to_dict` / :func:`config_from_dict` -- nested plain dicts (written beside every output, stored
  in model files) and back.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import math
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from inrecon.errors import InreconError

__all__ = [
    "Check",
    "Fraction",
    "InRange",
    "NonNegFloat",
    "NonNegInt",
    "PosFloat",
    "PosInt",
    "Probability",
    "build_config",
    "canonical_keys",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "describe_config",
    "field_docs",
    "override_config",
    "validate_config",
]


# --- constraints ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """A constraint on a value: ``test(value)`` must hold; ``text`` says what is required (``"> 0"``)."""

    test: Callable[[Any], bool]
    text: str


def InRange(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """``lo <= v <= hi`` (``<`` on an open side)."""

    def test(v):
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Check(test, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


_POSITIVE = Check(lambda v: v > 0, "> 0")
_NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")
PosInt = Annotated[int, _POSITIVE]
PosFloat = Annotated[float, _POSITIVE]
NonNegInt = Annotated[int, _NON_NEGATIVE]
NonNegFloat = Annotated[float, _NON_NEGATIVE]
Fraction = Annotated[float, InRange(0.0, 1.0, lo_open=True, hi_open=True)]
Probability = Annotated[float, InRange(0.0, 1.0)]


# --- introspection ----------------------------------------------------------------------------------------------
def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _split_annotated(tp: Any) -> tuple[Any, list[Check]]:
    checks: list[Check] = []
    while typing.get_origin(tp) is Annotated:
        checks += [a for a in tp.__metadata__ if isinstance(a, Check)]
        tp = typing.get_args(tp)[0]
    return tp, checks


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass: the string literal right under each field (inherited too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for a, b in itertools.pairwise(body):
            if (
                isinstance(a, ast.AnnAssign)
                and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant)
                and isinstance(b.value.value, str)
            ):
                docs[a.target.id] = " ".join(inspect.cleandoc(b.value.value).split())
    return docs


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted key, annotated type, owning class)`` of every non-config field, depth first."""
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        base, _ = _split_annotated(tp)
        if _is_config(base):
            yield from _leaves(base, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, cls


@functools.cache
def _alias_table(cls: type) -> dict[str, str]:
    """Flat key -> dotted key: unique leaf names anywhere in the tree, then ``ALIASES`` of every level."""
    keys = [k for k, _, _ in _leaves(cls)]
    by_leaf: dict[str, list[str]] = {}
    for k in keys:
        by_leaf.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    table = {leaf: ks[0] for leaf, ks in by_leaf.items() if len(ks) == 1 and "." in ks[0]}

    def walk(c: type, prefix: str) -> None:
        for alias, target in getattr(c, "ALIASES", {}).items():
            table[alias] = prefix + target
        for f in dataclasses.fields(c):
            base, _ = _split_annotated(_hints(c)[f.name])
            if _is_config(base):
                walk(base, f"{prefix}{f.name}.")

    walk(cls, "")
    return {a: t for a, t in table.items() if a not in keys}


# --- conversion and checks --------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    base, checks = _split_annotated(tp)
    origin = typing.get_origin(base)
    if origin is Literal:
        name = " | ".join(repr(a) for a in typing.get_args(base))
    elif origin in (typing.Union, types.UnionType):
        name = " | ".join(_type_name(a) for a in typing.get_args(base))
    elif origin in (tuple, list):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        name = f"{origin.__name__}[{_type_name(args[0]) if args else 'str'}]"
    else:
        name = "None" if base is type(None) else getattr(base, "__name__", str(base))
    return name + "".join(f" {c.text}" for c in checks)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (often a string from the command line) as an instance of ``tp``; raises with the fix."""
    base, checks = _split_annotated(tp)
    out = _coerce_base(value, base, key)
    for c in checks:
        if not c.test(out):
            raise InreconError(f"{key}={value!r} must be {c.text}", f"set {key} to a value {c.text}")
    return out


def _bad(key: str, value: Any, tp: Any) -> InreconError:
    return InreconError(
        f"config value {key}={value!r} is not a valid {_type_name(tp)}", f"give {key} a {_type_name(tp)}"
    )


def _coerce_base(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        for a in args:
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise InreconError(f"{key}={value!r} is not one of {list(args)}", f"choose {key} from {list(args)}")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        ):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except InreconError as exc:
                errors.append(exc)
        ranged = [e for e in errors if " must be " in str(e)]  # right type, out of range: say so
        raise ranged[0] if ranged else _bad(key, value, tp)
    if origin in (tuple, list):
        seq = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        inner = next((a for a in args if a is not Ellipsis), str)
        return origin(_coerce(v.strip() if isinstance(v, str) else v, inner, key) for v in seq)
    if tp is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise InreconError(f"config value {key}={value!r} is not a boolean", f"use {key}=true or {key}=false")
    if tp in (int, float):
        if isinstance(value, bool):
            raise _bad(key, value, tp)
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise _bad(key, value, tp) from None
        if not math.isfinite(f):
            raise InreconError(f"{key}={value!r} is not finite", f"give {key} a finite number")
        if tp is float:
            return f
        if not f.is_integer():
            raise InreconError(f"{key}={value!r} must be a whole number", f"give {key} an integer")
        return int(f)
    if tp is str:
        if not isinstance(value, str | int | float):
            raise _bad(key, value, tp)
        return str(value)
    return value


# --- building ---------------------------------------------------------------------------------------------------
def _section(cls: type, path: str) -> type | None:
    """The config class at dotted ``path`` below ``cls`` (``None`` when it is not a section)."""
    for name in path.split("."):
        fields_ = {f.name for f in dataclasses.fields(cls)}
        if name not in fields_:
            return None
        base, _ = _split_annotated(_hints(cls)[name])
        if not _is_config(base):
            return None
        cls = base
    return cls


def _resolve(cls: type, key: str) -> str:
    valid = {k for k, _, _ in _leaves(cls)}
    if key in valid:
        return key
    aliases = _alias_table(cls)
    if key in aliases:
        return aliases[key]
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):  # a section, then a key of it (``ngp.lr``)
        sub = _section(cls, ".".join(parts[:i]))
        if sub is not None:
            try:
                return ".".join(parts[:i]) + "." + _resolve(sub, ".".join(parts[i:]))
            except InreconError:
                break
    leaf = key.rsplit(".", 1)[-1]
    near = sorted(k for k in valid if k.rsplit(".", 1)[-1] == leaf)
    hint = f"did you mean {' or '.join(near)}?" if near else f"valid keys: {', '.join(sorted(valid))}"
    raise InreconError(f"unknown config key {key!r} for {cls.__name__}", hint)


def _flatten_overrides(values: Mapping[str, Any], cls: type, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (``{"optim": {"lr": 1e-3}}``) become dotted keys; dotted and flat keys pass through."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten_overrides(v, cls, f"{key}."))
        else:
            out[key] = v
    return out


def override_config(cfg: Any, values: Mapping[str, Any] | None) -> Any:
    """A copy of ``cfg`` with ``values`` applied (keys as in :func:`build_config`), checked."""
    cls = type(cfg)
    flat = _flatten_overrides(dict(values or {}), cls)
    resolved: dict[str, Any] = {}
    for key, value in flat.items():
        resolved[_resolve(cls, key)] = (key, value)
    types_ = {k: tp for k, tp, _ in _leaves(cls)}
    new = config_from_dict(cls, config_to_dict(cfg), check=False)
    for target, (key, value) in resolved.items():
        *path, name = target.split(".")
        obj = new
        for p in path:
            obj = getattr(obj, p)
        setattr(obj, name, _coerce(value, types_[target], key))
    validate_config(new)
    return new


def canonical_keys(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every key written as its dotted path in ``cls`` (aliases resolved; unknown keys raise)."""
    return {_resolve(cls, k): v for k, v in _flatten_overrides(dict(values), cls).items()}


def build_config(cls: type, values: Mapping[str, Any] | None = None) -> Any:
    """``cls`` from its defaults plus ``values`` (dotted keys, flat aliases or nested mappings; strings are
    converted), every field checked. Raises :class:`InreconError` for an unknown key or a bad value."""
    return override_config(cls(), values)


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Check every field of ``cfg`` (recursively) against its type and constraints, then ``cfg.check()`` if
    the class defines it (cross-field rules)."""
    cls = type(cfg)
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        base, _ = _split_annotated(tp)
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if _is_config(base):
            validate_config(value, f"{key}.")
        else:
            _coerce(value, tp, key)
    check = getattr(cfg, "check", None)
    if callable(check):
        check()


def config_to_dict(cfg: Any) -> dict:
    """Nested plain dict (tuples stay tuples)."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, d: Mapping[str, Any], *, check: bool = True) -> Any:
    """Inverse of :func:`config_to_dict`; missing keys keep their defaults, unknown keys raise."""
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InreconError(
            f"unknown config key(s) {unknown} for {cls.__name__}", f"valid keys: {sorted(names)}"
        )
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        base, _ = _split_annotated(_hints(cls)[f.name])
        v = d[f.name]
        if _is_config(base) and isinstance(v, Mapping):
            v = config_from_dict(base, v, check=False)
        elif isinstance(v, list) and tuple in (typing.get_origin(a) for a in (base, *typing.get_args(base))):
            v = tuple(v)  # JSON has no tuples: a list stored for a tuple field (also an optional one)
        kwargs[f.name] = v
    cfg = cls(**kwargs)
    if check:
        validate_config(cfg)
    return cfg


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(cfg: Any, base: Any | None = None) -> dict[str, Any]:
    """``{dotted key: value}`` of the leaves of ``cfg`` that differ from ``base`` (default: the class defaults)."""
    new, old = _flat(config_to_dict(cfg)), _flat(config_to_dict(base if base is not None else type(cfg)()))
    return {k: v for k, v in new.items() if old.get(k) != v}


def describe_config(cls: type) -> list[dict]:
    """One row per leaf: ``key`` (dotted), ``type``, ``default``, ``doc`` and ``aliases`` (flat keys)."""
    defaults = cls()
    rev: dict[str, list[str]] = {}
    for a, t in _alias_table(cls).items():
        rev.setdefault(t, []).append(a)
    rows = []
    for key, tp, owner in _leaves(cls):
        obj = defaults
        for p in key.split("."):
            obj = getattr(obj, p)
        rows.append(
            {
                "key": key,
                "type": _type_name(tp),
                "default": obj,
                "doc": field_docs(owner).get(key.rsplit(".", 1)[-1], ""),
                "aliases": sorted(rev.get(key, [])),
            }
        )
    return rows
