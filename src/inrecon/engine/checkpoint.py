"""Checkpoints that survive a kill: written atomically, resumed only when the run's config matches."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from inrecon.data.atomic import atomic_path
from inrecon.errors import InreconError

__all__ = ["config_fingerprint", "load_checkpoint", "save_checkpoint"]


def config_fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able description of a run (config + data identity)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (tensors, numbers, lists, dicts) to ``path`` atomically."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, fingerprint: str) -> dict | None:
    """The checkpoint at ``path`` if it exists and belongs to the run ``fingerprint``, else ``None``.

    A checkpoint of another run raises :class:`InreconError` rather than being silently overwritten.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated file from a kill during an older, non-atomic write
        raise InreconError(
            f"checkpoint {p} cannot be read ({exc.__class__.__name__})",
            "delete it to start from scratch",
        ) from None
    if state.get("fingerprint") != fingerprint:
        raise InreconError(
            f"checkpoint {p} belongs to a different run (other config or data)",
            "use another --checkpoint-dir, or delete the old checkpoint",
        )
    return state
