"""Leave nothing behind: temporary files of killed runs, and checkpoints once a run has finished.

:func:`~inrecon.data.atomic.atomic_path` writes every output through a hidden temporary file beside it,
``.STEM.XXXXXXXX.SUFFIX`` (``tempfile.mkstemp``: eight characters of ``[a-z0-9_]``), renamed over the target
when complete. A run killed with ``kill -9`` leaves that file. :func:`clean_stale_temporaries` removes such files
of ours -- our naming, one of the suffixes inrecon writes, older than this process and open in no process --
from a folder a command is about to write into. :class:`CheckpointFolder` removes a run's checkpoint files
after it finished (they exist to resume a killed run; a finished run never needs them) unless asked to keep
them, and then says how large they are.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from inrecon.cli.common import LOG

__all__ = ["CHECKPOINT_NAMES", "CheckpointFolder", "clean_stale_temporaries", "folder_size"]

_SUFFIXES = (
    r"\.h5|\.hdf5|\.json|\.jsonl|\.pt|\.npy|\.npz|\.nii|\.nii\.gz|\.png|\.dcm|\.safetensors|\.cfl|\.hdr|\.tmp"
)
_TEMP_NAME = re.compile(rf"^\.(?P<stem>.+)\.(?P<rand>[a-z0-9_]{{8}})(?P<suffix>{_SUFFIXES})$")

CHECKPOINT_NAMES = (
    "holdout.pt",
    "refit.pt",
    "fit.pt",
    "splitting.pt",
    "holdout.json",
    "meta_pretrain.pt",
    "*_pretrain.rank*.pt",
    "trials.jsonl",
)
"""File names (glob patterns) the iterative methods checkpoint to, in the checkpoint folder and its
sub-folders (the bilevel method's ``final/``)."""


def _open_files() -> set[str] | None:
    """Real paths of the files any readable process has open (``None`` without ``/proc``)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    out: set[str] = set()
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            for fd in (pid / "fd").iterdir():
                try:
                    out.add(os.readlink(fd))
                except OSError:
                    continue
        except OSError:
            continue
    return out


def _process_start() -> float:
    """When this process started (epoch seconds; now where ``/proc`` cannot tell)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line[:5] == "btime"
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def clean_stale_temporaries(folder: str | os.PathLike | None) -> list[Path]:
    """Remove the temporary files of killed inrecon runs from ``folder`` (module docstring); returns them.

    Only files named like ours (``.STEM.XXXXXXXX.SUFFIX`` with a suffix inrecon writes), last modified before
    this process started and open in no process are removed; anything else is left alone.
    """
    if folder is None:
        return []
    root = Path(folder)
    if not root.is_dir():
        return []
    candidates = [
        p for p in root.iterdir() if _TEMP_NAME.match(p.name) and p.is_file() and not p.is_symlink()
    ]
    if not candidates:
        return []
    started = _process_start() - 1.0
    stale = [p for p in candidates if p.stat().st_mtime < started]
    busy = _open_files() if stale else set()
    removed = []
    for p in stale:
        if busy is not None and os.path.realpath(p) in busy:
            continue
        try:
            p.unlink()
        except OSError:
            continue
        removed.append(p)
    if removed:
        LOG.info("removed %d temporary file(s) of interrupted runs from %s", len(removed), root)
    return removed


def folder_size(paths) -> int:
    """Total size in bytes of the files among ``paths``."""
    return sum(p.stat().st_size for p in paths if p.is_file())


class CheckpointFolder:
    """A run's ``--checkpoint-dir``: stale temporaries cleaned when opened, checkpoints removed (or reported)
    when the run has finished.

    Parameters
    ----------
    path
        The folder (``None``: nothing to do).
    keep
        Keep the checkpoint files after a successful run (``--keep-checkpoints``).
    """

    def __init__(self, path: str | os.PathLike | None, keep: bool = False):
        self.path = Path(path) if path else None
        self.keep = keep
        self.existed = self.path is not None and self.path.exists()
        if self.path is not None and self.existed:
            clean_stale_temporaries(self.path)
            for sub in (p for p in self.path.iterdir() if p.is_dir()):
                clean_stale_temporaries(sub)
        # a folder holding only our checkpoints (a killed run's) is ours to remove once empty
        self.ours = not self.existed or (
            self.path is not None and self.path.is_dir() and set(self._all_files()) == set(self.files())
        )

    def _all_files(self) -> list[Path]:
        return [p for p in self.path.rglob("*") if not p.is_dir()] if self.path is not None else []

    def files(self) -> list[Path]:
        """The checkpoint files now in the folder (:data:`CHECKPOINT_NAMES`, one level of sub-folders)."""
        if self.path is None or not self.path.is_dir():
            return []
        found: set[Path] = set()
        for pattern in CHECKPOINT_NAMES:
            found.update(self.path.glob(pattern))
            found.update(self.path.glob(f"*/{pattern}"))
        return sorted(p for p in found if p.is_file())

    def finish(self) -> dict:
        """After a successful run: remove the checkpoint files (and the folders left empty that this run made),
        or keep them and say their size. Returns ``{"checkpoints": ..., "bytes": ...}`` for the JSON result."""
        files = self.files()
        if self.path is None:
            return {}
        size = folder_size(files)
        if self.keep:
            if files:
                LOG.info("kept %d checkpoint file(s) in %s (%.1f MB)", len(files), self.path, size / 1e6)
            return {"checkpoints": str(self.path), "checkpoint_bytes": size}
        for p in files:
            p.unlink(missing_ok=True)
        for sub in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
            if sub != self.path and sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        if self.ours and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
        if files:
            LOG.info("removed %d checkpoint file(s) (%.1f MB) of the finished run", len(files), size / 1e6)
        return {"checkpoints_removed": len(files)}
