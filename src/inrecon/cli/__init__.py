"""The ``inrecon`` command line: thin subcommands over the public API, one module per command group.

Every subcommand validates its input before any long computation; an :class:`~inrecon.errors.InreconError`
becomes one line on stderr (``inrecon: error: <problem>. Fix: <fix>``) and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from inrecon import __version__
from inrecon.cli import experiments, recon, scans, training
from inrecon.errors import InreconError

__all__ = ["build_parser", "main"]

EPILOG = "Scan files follow the inrecon HDF5 contract (see the README); `inrecon info FILE` shows what a file holds."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except InreconError as exc:
        print(f"inrecon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inrecon: interrupted", file=sys.stderr)
        return 130
