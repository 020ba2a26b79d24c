"""Small input checks shared by every layer. Each raises :class:`~inrecon.errors.InreconError`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from inrecon.errors import InreconError, ShapeError

ArrayLike = torch.Tensor | np.ndarray


def require_finite(x: ArrayLike, name: str) -> None:
    """Raise if ``x`` holds NaN or Inf."""
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    if t.is_complex():
        bad = ~torch.isfinite(torch.view_as_real(t)).all(-1)
    else:
        bad = ~torch.isfinite(t)
    n = int(bad.sum())
    if n:
        raise InreconError(
            f"{name} contains {n} NaN or Inf value(s) (of {t.numel()})",
            f"clean {name} before reconstruction (e.g. replace them with 0 and mark them unsampled)",
        )


def require_ndim(x: ArrayLike, name: str, ndims: Sequence[int], layout: str) -> None:
    """Raise if ``x.ndim`` is not one of ``ndims``; ``layout`` describes the expected axes."""
    if x.ndim not in tuple(ndims):
        raise ShapeError(
            f"{name} has shape {tuple(x.shape)} ({x.ndim} dims) but must be {layout}",
            f"reshape or transpose {name} to {layout}",
        )


def require_shape(x: ArrayLike, name: str, shape: Sequence[int], meaning: str = "") -> None:
    """Raise if ``x.shape`` differs from ``shape``."""
    if tuple(x.shape) != tuple(int(s) for s in shape):
        extra = f" ({meaning})" if meaning else ""
        raise ShapeError(
            f"{name} has shape {tuple(x.shape)} but {tuple(int(s) for s in shape)} is required{extra}",
            f"give {name} the shape {tuple(int(s) for s in shape)}",
        )


def require_complex(x: ArrayLike, name: str) -> None:
    """Raise if ``x`` is not a complex array."""
    is_c = x.is_complex() if isinstance(x, torch.Tensor) else np.iscomplexobj(x)
    if not is_c:
        raise InreconError(
            f"{name} has real dtype {x.dtype} but must be complex (complex64)",
            f"store {name} as complex64; if real and imaginary parts are separate, combine them as re + 1j*im",
        )


def require_real(x: ArrayLike, name: str) -> None:
    """Raise if ``x`` is complex or not numeric."""
    if isinstance(x, torch.Tensor):
        ok = not x.is_complex() and x.dtype != torch.bool
    else:
        ok = np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)
    if not ok:
        raise InreconError(
            f"{name} has dtype {x.dtype} but must be real (float32)", f"store {name} as float32"
        )


def require_positive(value: float, name: str) -> None:
    """Raise unless ``value`` is a finite positive number."""
    if not (np.isfinite(value) and value > 0):
        raise InreconError(f"{name} is {value} but must be a positive number", f"set {name} to a value > 0")


def require_maps(maps: ArrayLike) -> None:
    """Raise unless ``maps`` are complex coil sensitivities ``(C, H, W)`` or ``(C, D, H, W)``."""
    require_complex(maps, "sens_maps")
    if maps.ndim not in (3, 4):
        raise ShapeError(
            f"sens_maps has shape {tuple(maps.shape)} but must be (C, H, W) or (C, D, H, W)",
            "give one complex map per coil on the image grid",
        )
