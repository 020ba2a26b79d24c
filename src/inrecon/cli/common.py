"""What every ``inrecon`` subcommand shares: ``--set`` / ``--config`` parsing, JSON output, device choice."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from inrecon.errors import InreconError

__all__ = [
    "add_common",
    "add_config",
    "command",
    "json_default",
    "load_config_file",
    "parse_sets",
    "print_json",
    "set_help",
]


def parse_sets(items: list[str] | None) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}`` (values stay strings; configs convert them)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise InreconError(f"--set {item!r} is not key=value", "write e.g. --set optim.steps=2000")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_config_file(path: str | None) -> dict:
    """A JSON object of config values (nested sections or dotted keys)."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise InreconError(f"config file {path!r} does not exist", "check the path given to --config")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InreconError(
            f"config file {path!r} is not valid JSON ({exc.msg} at line {exc.lineno})", "fix the JSON syntax"
        ) from None
    if not isinstance(data, dict):
        raise InreconError(f"config file {path!r} must hold a JSON object", 'write {"key": value, ...}')
    return data


def json_default(o):
    import numpy as np
    import torch

    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, np.ndarray | np.generic):
        return o.tolist()
    return str(o)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=json_default))


def set_help(what: str = "the method's config") -> str:
    return (
        f"override a value of {what} (repeatable): a dotted key such as optim.lr=1e-3 or a short key such as "
        "steps=2000; `inrecon methods NAME` lists the keys and defaults"
    )


def command(sub, func):
    """The subparser of ``func`` (``cmd_recon_series`` -> ``recon-series``): its help is the first line of the
    function's docstring, its description the whole docstring."""
    name = func.__name__.removeprefix("cmd_").replace("_", "-")
    doc = inspect.cleandoc(func.__doc__ or "")
    first = doc.split("\n", 1)[0].rstrip(".")
    s = sub.add_parser(name, help=first[:1].lower() + first[1:], description=" ".join(doc.split()))
    s.set_defaults(func=func)
    return s


def add_config(s, what: str = "the method's config") -> None:
    """``--set`` and ``--config``."""
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help(what))
    s.add_argument("--config", help="JSON file of config values (overridden by --set)")


def add_common(s, *, device: bool = True, quiet: bool = True) -> None:
    """``--device`` and ``-q``."""
    if device:
        s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (CUDA when present)")
    if quiet:
        s.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
