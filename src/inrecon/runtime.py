"""Process-level settings that make PyTorch fast on small CPU machines, and device selection.

glibc returns large freed buffers to the operating system and faults them back in on the next step; an INR
training step allocates hundreds of MB of temporaries, so this costs up to half of the step time on the CPU
(measured: 0.58 s -> 0.33 s per hash-grid step at 256x256). The classical solvers' large buffers pay the same:
TV on the real radial scan (16 coils, NUFFT on a 384^2 grid, 200 PDHG iterations) 39.5 -> 29.6 s at 1 thread.
:func:`tune_allocator` raises the mmap and trim thresholds once per process; the training engine and
:func:`inrecon.recon.api.run_method` (every method) call it on their first run (never at import). Set
``INRECON_MALLOPT=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

_TUNED = False
# mallopt parameter numbers from <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep freed buffers below ``threshold_bytes`` in the heap (glibc only). Returns whether it applied."""
    global _TUNED
    if _TUNED:
        return True
    if os.environ.get("INRECON_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes) == 1 and ok
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    _TUNED = ok
    return ok


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from inrecon.errors import InreconError

        raise InreconError(f"device {device!r} was requested but CUDA is not available", "use --device cpu")
    return dev


_FAST_BF16: dict[str, bool] = {}


def fast_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: CUDA GPUs of compute capability 8.0 (Ampere) or
    newer; x86 CPUs with AVX-512 BF16 or AMX (read once from ``/proc/cpuinfo``, Linux). Elsewhere bf16 products are
    emulated and slower than float32. ``INRECON_BF16=0`` / ``1`` overrides the detection."""
    dev = torch.device(device)
    forced = os.environ.get("INRECON_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if dev.type not in _FAST_BF16:
        if dev.type == "cuda":
            _FAST_BF16[dev.type] = torch.cuda.is_available() and torch.cuda.get_device_capability(dev)[0] >= 8
        elif dev.type == "cpu" and sys.platform.startswith("linux"):
            try:
                with open("/proc/cpuinfo") as f:
                    flags = f.read()
            except OSError:
                flags = ""
            _FAST_BF16[dev.type] = "avx512_bf16" in flags or "amx_bf16" in flags
        else:
            _FAST_BF16[dev.type] = False
    return _FAST_BF16[dev.type]
