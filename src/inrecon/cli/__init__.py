"""The ``inrecon`` command line: thin subcommands over the public API, one module per command group.

Every subcommand checks its input, its outputs (:func:`~inrecon.cli.common.check_outputs`) and the memory it
will need before any long computation; an :class:`~inrecon.errors.InreconError` (and a usage error, and running
out of memory) becomes one line on stderr (``inrecon: error: <problem>. Fix: <fix>``) and exit status 2, without
a traceback. Results are JSON on stdout; messages and warnings go through the ``inrecon`` logger to stderr
(``-q``: warnings only, ``-v``: debug too). A closed stdout (``inrecon info x.h5 | head``) ends the command
quietly with the status of a broken pipe (141), as other Unix tools do. Ctrl-C and SIGTERM (a scheduler's
kill) end it with 130 / 143 after removing its temporary files, a training run first writing its checkpoint at
the end of the running step (:mod:`inrecon.interrupts`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings

from inrecon import __version__, interrupts
from inrecon.cli import experiments, recon, scans, training
from inrecon.cli.common import LOG, setup_logging
from inrecon.errors import InreconError

__all__ = ["build_parser", "main"]

EPILOG = "Scan files follow the inrecon HDF5 contract (see the README); `inrecon info FILE` shows what a file holds."
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (``inrecon: error: ... Fix: ...``) and exit status 2."""

    def error(self, message: str):
        sys.stderr.write(f"inrecon: error: {message}. Fix: see `{self.prog} --help`\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="inrecon",
        description="Reconstruct MRI and CT images from raw measurements with physics-informed implicit "
        "neural representations (scan-specific, bilevel-tuned, DisINR) and classical baselines.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"inrecon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for group in (scans, recon, training, experiments):
        group.add_parsers(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    LOG.warning("%s", message)


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and ("OutOfMemory" in type(exc).__name__ or "can't allocate memory" in str(exc))
    )


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush stays quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _interrupted_line(args, exc: KeyboardInterrupt) -> str:
    """What an interrupted command says: the signal, and how to resume where there is a checkpoint."""
    name = f" by {signal.Signals(exc.signum).name}" if isinstance(exc, interrupts.Interrupted) else ""
    line = f"interrupted{name}"
    ckdir = getattr(args, "checkpoint_dir", None)
    if ckdir:
        line += f"; the same command with --checkpoint-dir {ckdir} resumes from its checkpoints"
    return line


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except InreconError as exc:
        print(f"inrecon: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:
        print(f"inrecon: {_interrupted_line(args, exc)}", file=sys.stderr)
        return exc.exit_status if isinstance(exc, interrupts.Interrupted) else 130
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        print(
            f"inrecon: error: {args.command} ran out of memory ({type(exc).__name__}). Fix: make the problem "
            "smaller (size, coils, views, batch_size, log2_table_size) or free memory",
            file=sys.stderr,
        )
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    handler = setup_logging(args)
    old_level = LOG.level
    try:
        with warnings.catch_warnings():
            # each shown once, as an `inrecon: warning: ...` line
            warnings.filterwarnings("default", category=UserWarning)
            warnings.showwarning = _show_warning
            with interrupts.graceful():  # SIGTERM as Ctrl-C; a training run saves before it stops
                return _run(args)
    finally:
        LOG.removeHandler(handler)
        LOG.setLevel(old_level)
