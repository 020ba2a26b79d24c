"""What every ``inrecon`` subcommand shares: ``--set`` / ``--config`` parsing, JSON output, logging, device
choice, and the checks of outputs and resources that run before any computation."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from inrecon.errors import InreconError

__all__ = [
    "LOG",
    "add_common",
    "add_config",
    "check_device",
    "check_memory_for",
    "check_outputs",
    "command",
    "json_default",
    "load_config_file",
    "parse_sets",
    "print_json",
    "progress_choice",
    "set_help",
    "setup_logging",
]

LOG = logging.getLogger("inrecon")
"""The package's logger: the command line sends it to stderr (``-q``: warnings only, ``-v``: debug too)."""


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
    if not p.is_file():
        raise InreconError(f"config file {path!r} does not exist", "check the path given to --config")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" ({exc.msg} at line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InreconError(f"config file {path!r} is not valid JSON{where}", "fix the JSON syntax") from None
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
    """The command's result on stdout (also with ``-q``)."""
    print(json.dumps(obj, indent=2, default=json_default), flush=True)


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


def add_common(s, *, device: bool = True, quiet: bool = True, memory: bool = True) -> None:
    """``--device``, ``-q`` / ``-v`` and ``--max-memory``."""
    if device:
        s.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (CUDA when present)")
    if quiet:
        s.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="no progress, no messages (the JSON result still prints)",
        )
        s.add_argument("-v", "--verbose", action="store_true", help="more messages (debug level)")
    if memory:
        s.add_argument(
            "--max-memory",
            metavar="SIZE",
            help="memory the run may use, e.g. 8G [the memory available now; env INRECON_MAX_MEMORY]",
        )


def progress_choice(args) -> bool | None:
    """``False`` with ``-q`` (or ``--no-progress``), else ``None``: INRECON_PROGRESS and the terminal decide."""
    if getattr(args, "quiet", False) or getattr(args, "no_progress", False):
        return False
    return None


def check_device(text: str | None):
    """``--device`` as a :class:`torch.device` (``auto``: CUDA when present), or a one-line error."""
    import torch

    from inrecon.runtime import resolve_device

    if text not in (None, "auto"):
        try:
            torch.device(text)
        except (RuntimeError, ValueError, TypeError):
            raise InreconError(
                f"--device {text!r} is not a device", "use cpu, cuda, cuda:N (a CUDA device number) or auto"
            ) from None
    return resolve_device(text or "auto")


def check_memory_for(args, estimate: int, what: str) -> None:
    """:func:`inrecon.resources.check_memory` with ``--max-memory`` (or ``INRECON_MAX_MEMORY``) as the limit."""
    from inrecon.resources import check_memory

    limit = getattr(args, "max_memory", None) or os.environ.get("INRECON_MAX_MEMORY") or None
    check_memory(estimate, what, limit)
    LOG.debug("memory estimate for %s: %.0f MiB", what, estimate / 2**20)


# --- outputs ----------------------------------------------------------------------------------------------------
def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


def _writable_folder(path: Path, what: str) -> None:
    """The folder that will hold ``path`` is (or can be made) a writable directory."""
    parent = Path(os.path.abspath(path)).parent
    probe = parent
    while not probe.exists():
        if probe.is_symlink():  # a dangling link
            raise InreconError(
                f"{what} {str(path)!r} lies under a broken link {str(probe)!r}", "fix the path"
            )
        probe = probe.parent
    if not probe.is_dir():
        raise InreconError(
            f"{what} {str(path)!r} cannot be written: {str(probe)!r} is a file, not a folder",
            "choose an output path inside a folder",
        )
    try:  # the one sure test (permissions, read-only mounts, /proc): make a file there and remove it
        fd, tmp = tempfile.mkstemp(prefix=".inrecon-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InreconError(
            f"{what} {str(path)!r} cannot be written: folder {str(probe)!r} is not writable ({exc.strerror})",
            "choose a folder you can write to",
        ) from None


def _check_one(path: Path, inputs: list[Path], *, folder: bool, what: str) -> None:
    for src in inputs:
        if _same(path, src):
            raise InreconError(
                f"{what} {str(path)!r} is the input {str(src)!r}: writing it would replace the input",
                f"write the {what} to another path",
            )
        if folder and src.is_file() and src.suffix.lower() in ("", ".dcm") and _inside(src, path):
            raise InreconError(
                f"{what} {str(path)!r} holds the input {str(src)!r}: writing into it could replace the input",
                f"write the {what} to another folder",
            )
    if path.exists() and not folder and path.is_dir():
        raise InreconError(
            f"{what} {str(path)!r} is an existing folder", "give a file name (or remove the folder)"
        )
    if path.exists() and folder and not path.is_dir():
        raise InreconError(
            f"{what} {str(path)!r} is an existing file, but a folder is written there",
            "give a folder name (or remove the file)",
        )
    _writable_folder(path / "x" if folder else path, what)


def check_outputs(
    outputs: Iterable[str | os.PathLike | None] = (),
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    folders: Iterable[str | os.PathLike | None] = (),
    checkpoint_dir: str | os.PathLike | None = None,
) -> None:
    """Everything about where a command writes that can be known before it starts: each output file path is
    non-empty, is not (through links or ``..``) one of the ``inputs``, is not an existing folder, and lies in a
    folder that exists as a folder (or can be made) and is writable; each output folder (``folders``, and the
    ``checkpoint_dir``) is not a file, is not an input and holds no input DICOM file (``.dcm`` or no suffix,
    the names a DICOM series is written with). Raises :class:`InreconError`; every command calls it
    before any computation."""
    ins = [Path(p) for p in inputs if p]
    for raw in outputs:
        if raw is None or not str(raw).strip():
            raise InreconError("the output path is empty", "give an output file name with -o")
        _check_one(Path(raw), ins, folder=False, what="output")
    for raw in folders:
        if raw is None or not str(raw).strip():
            raise InreconError("the output folder is empty", "give an output folder with -o")
        _check_one(Path(raw), ins, folder=True, what="output folder")
    if checkpoint_dir is not None:
        if not str(checkpoint_dir).strip():
            raise InreconError("--checkpoint-dir is empty", "give a folder for the checkpoints")
        _check_one(Path(checkpoint_dir), ins, folder=True, what="checkpoint folder")


def setup_logging(args, stream=None) -> logging.Handler:
    """Send :data:`LOG` to stderr at the level of ``-q`` / ``-v``; returns the handler (removed by the caller)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    LOG.addHandler(handler)
    if getattr(args, "quiet", False):
        LOG.setLevel(logging.WARNING)
    elif getattr(args, "verbose", False):
        LOG.setLevel(logging.DEBUG)
    else:
        LOG.setLevel(logging.INFO)
    return handler


class _Formatter(logging.Formatter):
    """``inrecon: message`` (info), ``inrecon: warning: message``, ``inrecon: debug: message``."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"inrecon: {record.levelname.lower()}: {msg}"
        if record.levelno < logging.INFO:
            return f"inrecon: debug: {msg}"
        return f"inrecon: {msg}"
