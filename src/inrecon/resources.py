"""Memory estimates from shapes, checked against what the machine has before anything is allocated.

A command that would need more memory than the machine can give fails late and badly (a ``MemoryError`` after
minutes, or the kernel's OOM killer). Each estimate here is a simple upper-bound-ish count of the large arrays a
command allocates -- images, coil images and k-space, sinograms and the CT system matrix, hash tables with
their gradients and Adam moments, a step's activations -- computed from the shapes alone, so it can be checked
before the first allocation. The estimates are deliberately generous (a factor of about 2 on what was
measured); a run whose estimate exceeds the limit is refused with the estimate, the limit and the fix.

The limit is the memory available now: ``MemAvailable`` of ``/proc/meminfo`` (or :mod:`psutil` where there is
no ``/proc``), lowered to what the process's cgroup still allows; ``--max-memory`` (e.g. ``8G``) replaces it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from inrecon.errors import InreconError

__all__ = [
    "available_memory",
    "check_memory",
    "estimate_ct",
    "estimate_field",
    "estimate_mri",
    "estimate_scan",
    "estimate_volume",
    "field_settings",
    "format_bytes",
    "parse_size",
]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_C64 = 8  # bytes of one complex64
_F32 = 4
_F64 = 8


def parse_size(text: str | int | float) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"2e9"`` -> bytes (binary units: ``1K = 1024``)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
        if not m:
            raise InreconError(
                f"memory size {text!r} is not understood",
                "write a number of bytes with K, M, G or T, e.g. 8G",
            )
        value, unit = float(m.group(1)), m.group(2).upper()
    n = value * _UNITS[unit]
    if not (math.isfinite(n) and n > 0):
        raise InreconError(f"memory size {text!r} must be positive", "write e.g. --max-memory 8G")
    return int(n)


def format_bytes(n: float) -> str:
    """``1536 * 2**20`` -> ``"1.5 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What the cgroup (v2, else v1) still lets this process allocate, or ``None`` without a limit."""
    pairs = (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    )
    for limit_file, usage_file in pairs:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory() -> int | None:
    """Bytes this process can allocate now (module docstring), or ``None`` when that cannot be told."""
    avail = _meminfo_available()
    if avail is None:
        try:
            import psutil  # optional

            avail = int(psutil.virtual_memory().available)
        except ImportError:
            avail = None
    group = _cgroup_available()
    if group is not None:
        avail = group if avail is None else min(avail, group)
    return avail


def check_memory(estimate: int, what: str, limit: int | str | None = None) -> None:
    """Raise :class:`InreconError` when ``estimate`` bytes exceed ``limit`` (bytes, a size such as ``"8G"``, or
    ``None``: :func:`available_memory`). ``what`` names the work (``"simulate 16384x16384, 12 coils"``)."""
    if limit is None:
        cap, source = available_memory(), "available memory"
        if cap is None:
            return
    else:
        cap, source = parse_size(limit), "--max-memory"
    if estimate > cap:
        raise InreconError(
            f"{what} needs about {format_bytes(estimate)} of memory, more than the {format_bytes(cap)} of {source}",
            "make it smaller (size, coils, views, table size), or raise the limit with --max-memory "
            "(e.g. --max-memory 64G) if you know it fits",
        )


def _prod(shape: Sequence[int]) -> int:
    return int(math.prod(int(s) for s in shape))


def estimate_mri(
    image_shape: Sequence[int], n_coils: int, n_samples: int | None = None, *, copies: int = 6
) -> int:
    """Bytes for multi-coil MRI work on ``image_shape`` with ``n_coils``: the phantom / image in float64 (a few
    temporaries), ``copies`` coil-sized complex64 arrays (maps, coil images, k-space, FFT buffers, solver
    vectors) and ``n_samples`` non-Cartesian samples per coil (NUFFT interpolation)."""
    n = _prod(image_shape)
    coil = max(1, int(n_coils))
    total = 6 * n * _F64 + copies * coil * n * _C64
    if n_samples:
        total += 4 * coil * int(n_samples) * _C64 + 2 * n * _C64 * 4  # samples + oversampled NUFFT grid
    return int(total)


def estimate_ct(image_shape: Sequence[int], n_views: int, n_detectors: int) -> int:
    """Bytes for CT work: the sparse system matrix and its transpose (about ``V*N*(H+W)/2`` non-zeros of 12
    bytes each, plus the build's chunk temporaries), the sinogram and a few images."""
    h, w = (int(s) for s in image_shape)
    nnz = int(n_views) * int(n_detectors) * (h + w) // 2
    return int(2 * nnz * 12 + 4 * int(n_views) * int(n_detectors) * _F32 + 8 * h * w * _F64 + (200 << 20))


def estimate_volume(image_shape: Sequence[int]) -> int:
    """Bytes for volume fitting: the volume and a few copies."""
    return int(6 * _prod(image_shape) * _F64)


def estimate_field(
    image_shape: Sequence[int],
    *,
    log2_table_size: int | None = None,
    n_levels: int = 16,
    n_features: int = 2,
    width: int = 64,
    layers: int = 2,
    batch: int | None = None,
) -> int:
    """Bytes for fitting a neural field on ``image_shape``: the hash tables (``n_levels * 2**log2_table_size *
    n_features`` float32, times 4 for the gradient and two Adam moments) and one step's activations over
    ``batch`` coordinates (default: every pixel; encoding plus ``layers`` hidden layers of ``width``, kept for
    the backward pass)."""
    dim = len(image_shape)
    log2_t = log2_table_size or (18 if dim <= 2 else 19)
    n = _prod(image_shape)
    params = int(n_levels) * (2 ** int(log2_t)) * int(n_features)
    pixels = min(n, int(batch)) if batch else n
    acts = pixels * (int(n_levels) * int(n_features) * 4 + (int(layers) + 2) * int(width) * 3)
    return int(4 * params * _F32 + acts * _F32 + 4 * n * _C64)


def _leaves(d: Mapping, prefix: str = "") -> Iterator[tuple[str, object]]:
    for k, v in d.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def field_settings(config: Mapping | None) -> dict | None:
    """The neural-field sizes in a (nested dict) method config -- hash tables, MLP width and depth, batch --
    as keyword arguments of :func:`estimate_field`; ``None`` when the config has no hash grid."""
    if not config:
        return None
    found: dict[str, object] = {}
    for key, value in _leaves(config):
        leaf = key.rsplit(".", 1)[-1]
        if ".siren." in f".{key}":
            continue
        if leaf in ("log2_table_size", "n_levels", "n_features", "batch_size", "coord_batch"):
            found.setdefault(leaf, value)
        elif leaf in ("width", "encoder_width", "decoder_width") and isinstance(value, int):
            found["width"] = max(int(found.get("width", 0)), value)
        elif leaf == "n_hidden_layers":
            found.setdefault("layers", value)
    if "n_levels" not in found:
        return None
    batch = found.pop("batch_size", None) or found.pop("coord_batch", None)
    found.pop("coord_batch", None)
    return {**found, "batch": batch}


def estimate_scan(scan, config: Mapping | None = None) -> tuple[int, str]:
    """``(bytes, description)`` for reconstructing ``scan`` (any scan container, read by its attributes) with
    a method of ``config`` (nested dict; a hash-grid field adds :func:`estimate_field`)."""
    shape = tuple(int(s) for s in scan.image_shape)
    what = f"{scan.modality} {'x'.join(map(str, shape))}"
    if scan.modality == "ct":
        est = estimate_ct(shape, scan.n_views, scan.geometry.n_detectors)
        what += f", {scan.n_views} views"
    elif scan.modality == "volume":
        est = estimate_volume(shape)
    else:
        frames = getattr(scan, "frames", None) or [scan]
        f0 = frames[0]
        samples = None if f0.trajectory is None else int(f0.kspace.shape[-1])
        est = len(frames) * estimate_mri(shape, f0.n_coils, samples)
        what += f", {f0.n_coils} coils" + (f", {len(frames)} frames" if len(frames) > 1 else "")
    field = field_settings(config)
    if field is not None:
        est += estimate_field(shape, **field)
        what += f", hash tables 2^{field.get('log2_table_size') or 'auto'}"
    return int(est), what
