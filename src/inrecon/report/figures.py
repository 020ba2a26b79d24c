"""Report figures: image grids with zoomed crops and error maps, convergence curves, timing bars.

Figures are built as :class:`matplotlib.figure.Figure` objects directly, never through ``pyplot``, and saved
with the Agg renderer. This needs no ``matplotlib.use(...)``: the backend of an interactive session is left as
it is, and no figure is registered with (or leaks into) pyplot's figure manager.

Every method gets one colour in every figure and table of a report (:class:`MethodPalette`): well-known
methods have fixed colours (classical baselines cool, INR methods warm), the reference is grey, other names
take the next unused colour in first-seen order.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from inrecon.errors import InreconError, ShapeError
from inrecon.report.tables import format_number

__all__ = [
    "REFERENCE_COLOR",
    "MethodPalette",
    "auto_zoom",
    "bars_figure",
    "curves_figure",
    "figure_png",
    "image_grid_figure",
    "is_reference_name",
    "method_color",
    "to_image",
]

REFERENCE_COLOR = "#6e6e6e"
ZOOM_COLOR = "#ffc800"
_REFERENCE_NAMES = {"reference", "ref", "groundtruth", "gt", "target", "truth", "fullysampled"}
# Fixed colours for the project's methods (keys: lower case, letters and digits only).
_KNOWN = {
    # classical baselines: cool colours
    "zf": "#8c564b",
    "zerofilled": "#8c564b",
    "cgsense": "#1f77b4",
    "sense": "#1f77b4",
    "fbp": "#1f77b4",
    "l1wavelet": "#17becf",
    "l1wav": "#17becf",
    "sart": "#17becf",
    "sirt": "#393b79",
    "tv": "#2ca02c",
    "tvct": "#2ca02c",
    # INR methods: warm colours
    "ngp": "#d62728",
    "scan": "#d62728",
    "imjense": "#ff7f0e",
    "meta": "#9467bd",
    "strainer": "#e377c2",
    "disinr": "#b8860b",
    "bilevel": "#8c2d04",
}
# Colours for other names, distinct from the fixed ones.
_EXTRA = (
    "#3b5bdb",
    "#e8590c",
    "#0ca678",
    "#ae3ec9",
    "#c2255c",
    "#5c940d",
    "#1098ad",
    "#f08c00",
    "#862e9c",
    "#364fc7",
    "#a61e4d",
    "#2b8a3e",
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def is_reference_name(name: str) -> bool:
    """Whether ``name`` denotes the reference ("reference", "ground truth", "GT", "target", ...)."""
    return _key(name) in _REFERENCE_NAMES


def method_color(name: str) -> str:
    """A fixed colour for ``name`` without state: the known colour, grey for the reference, else a hash pick."""
    key = _key(name)
    if key in _REFERENCE_NAMES:
        return REFERENCE_COLOR
    if key in _KNOWN:
        return _KNOWN[key]
    return _EXTRA[zlib.crc32(key.encode()) % len(_EXTRA)]


class MethodPalette:
    """Method name -> colour, consistent across all figures and tables of one report.

    Parameters
    ----------
    overrides
        Optional ``name -> colour`` (any matplotlib colour) that takes precedence.
    """

    def __init__(self, overrides: Mapping[str, str] | None = None):
        self._fixed = {_key(k): to_hex(v) for k, v in (overrides or {}).items()}
        self._assigned: dict[str, str] = {}

    def color(self, name: str) -> str:
        """The colour of ``name`` as ``#rrggbb``."""
        key = _key(name)
        if key in self._fixed:
            return self._fixed[key]
        if key in _REFERENCE_NAMES:
            return REFERENCE_COLOR
        if key in _KNOWN:
            return _KNOWN[key]
        if key not in self._assigned:
            used = set(self._assigned.values()) | set(self._fixed.values())
            free = [c for c in _EXTRA if c not in used]
            self._assigned[key] = free[0] if free else method_color(name)
        return self._assigned[key]

    __call__ = color


def to_image(image: Any, name: str) -> np.ndarray:
    """A 2D float64 magnitude image from a numpy array or torch tensor (complex -> ``abs``)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu()
        if hasattr(image, "resolve_conj"):
            image = image.resolve_conj()
        image = image.numpy()
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ShapeError(
            f"image {name!r} has shape {arr.shape} but must be 2D (rows, columns)",
            "pass one slice, e.g. volume[k], or the root-sum-of-squares over coils",
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InreconError(f"image {name!r} has dtype {arr.dtype}, not a number", "pass a numeric array")
    return np.abs(arr).astype(np.float64) if np.iscomplexobj(arr) else arr.astype(np.float64)


def auto_zoom(reference: np.ndarray, size: int | None = None) -> tuple[int, int, int, int]:
    """Pick the square crop with the most reference detail: the largest sum of gradient magnitude.

    The image is scaled by its 0.5-99.5 percentile range, the gradient magnitude ``|∇x|`` (central
    differences) is summed over every ``size x size`` window (an integral image), and the window with the
    largest sum wins (the first one on ties). Summing ``|∇x|`` rather than ``|∇x|²`` favours regions with much
    fine structure over a single strong edge such as an object border. NaN counts as no detail.

    Parameters
    ----------
    reference
        2D image, shape (rows, columns).
    size
        Side of the crop in pixels; default a quarter of the shorter side (at least 8, at most the side).

    Returns
    -------
    (row, col, height, width)
        Top-left corner and size of the crop, in pixels.
    """
    ref = to_image(reference, "reference")
    rows, cols = ref.shape
    side = min(rows, cols)
    if size is None:
        size = max(8, round(side / 4))
    size = int(max(1, min(size, side)))
    finite = ref[np.isfinite(ref)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    scaled = np.nan_to_num((ref - lo) / (hi - lo if hi > lo else 1.0), nan=0.0, posinf=0.0, neginf=0.0)
    if rows < 2 or cols < 2:
        return 0, 0, size, size
    gy, gx = np.gradient(scaled)
    energy = np.hypot(gy, gx)
    integral = np.zeros((rows + 1, cols + 1))
    integral[1:, 1:] = energy.cumsum(0).cumsum(1)
    sums = (
        integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    )
    r, c = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(r), int(c), size, size


def _check_zoom(zoom: Sequence[int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    if len(zoom) != 4:
        raise InreconError(
            f"zoom={zoom!r} must have 4 numbers", "pass zoom=(row, col, height, width) in pixels"
        )
    r, c, h, w = (int(v) for v in zoom)
    if h < 1 or w < 1 or r < 0 or c < 0 or r + h > shape[0] or c + w > shape[1]:
        raise InreconError(
            f"zoom box (row, col, height, width)={zoom!r} does not fit in an image of shape {shape}",
            "pass a box inside the image, or zoom=None to pick one automatically",
        )
    return r, c, h, w


def _metric_text(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return ""
    parts = []
    for key, value in list(metrics.items())[:3]:
        if isinstance(value, tuple):
            value = value[0]
        try:
            v = float(value)
        except (TypeError, ValueError):
            parts.append(f"{key} {value}")
            continue
        k = key.lower()
        if k == "psnr":
            parts.append(f"PSNR {v:.2f} dB")
        elif k == "ssim":
            parts.append(f"SSIM {v:.3f}")
        elif k == "nrmse":
            parts.append(f"NRMSE {v:.3f}")
        else:
            parts.append(f"{key} {v:.3g}")
    return " · ".join(parts)


def _percentile_window(images: Sequence[np.ndarray]) -> tuple[float, float]:
    values = np.concatenate([im[np.isfinite(im)].ravel() for im in images])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _grid_columns(
    images: Mapping[str, Any], reference: Any | None, reference_name: str
) -> tuple[list[tuple[str, np.ndarray, bool]], np.ndarray | None]:
    """The grid's columns ``(name, image, is_reference)``, reference first, checked to share one shape; and
    the reference image (or ``None``)."""
    columns: list[tuple[str, np.ndarray, bool]] = []
    ref = None if reference is None else to_image(reference, reference_name)
    if ref is not None:
        columns.append((reference_name, ref, True))
    for name, im in images.items():
        columns.append((str(name), to_image(im, str(name)), False))
    shape = columns[0][1].shape
    for name, im, _ in columns:
        if im.shape != shape:
            raise ShapeError(
                f"image {name!r} has shape {im.shape} but {columns[0][0]!r} has {shape}",
                "crop or resample all images (and the reference) to one shape",
            )
    return columns, ref


def _grid_window(
    window: tuple[float, float] | None, ref: np.ndarray | None, columns: list[tuple[str, np.ndarray, bool]]
) -> tuple[float, float]:
    """The grey window: ``window`` checked, else the percentile window of the reference (or all images)."""
    lo, hi = (
        (float(window[0]), float(window[1]))
        if window is not None
        else _percentile_window([ref] if ref is not None else [im for _, im, _ in columns])
    )
    if not hi > lo:
        raise InreconError(f"window={window!r} must have low < high", "pass window=(low, high)")
    return lo, hi


def _grid_errors(
    columns: list[tuple[str, np.ndarray, bool]], ref: np.ndarray | None, show_err: bool
) -> tuple[dict[str, np.ndarray], float | None]:
    """Per-method ``|rec - ref|`` maps (empty unless ``show_err``) and their shared colour-scale top."""
    errors = {name: np.abs(im - ref) for name, im, is_ref in columns if show_err and not is_ref}
    err_max = None
    if errors:
        values = np.concatenate([e[np.isfinite(e)].ravel() for e in errors.values()])
        err_max = float(np.percentile(values, 99.5)) if values.size else 1.0
        err_max = err_max if err_max > 0 else 1.0
    return errors, err_max


def _grid_axes(
    shape: tuple[int, int], box: tuple[int, int, int, int], ncols: int, show_err: bool, panel_inches: float
):
    """The figure and its ``(rows, ncols)`` axes: image row, zoom row and (with ``show_err``) error row."""
    _, _, bh, bw = box
    nrows = 3 if show_err else 2
    aspect = shape[0] / shape[1]
    crop_aspect = bh / bw
    heights = [aspect, crop_aspect] + ([aspect] if show_err else [])
    fig_w = panel_inches * ncols + (0.9 if show_err else 0.3)
    fig_h = panel_inches * sum(heights) + 0.55 + 0.12 * nrows
    fig = Figure(figsize=(fig_w, fig_h), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"height_ratios": heights})
    return fig, axes


def _draw_image_panel(
    ax,
    name: str,
    im: np.ndarray,
    color: str,
    window: tuple[float, float],
    box: tuple[int, int, int, int],
    subtitle: str,
    any_metrics: bool,
) -> None:
    """Row 1: the image in the grey window with the zoom box, titled in ``color`` with the metrics below."""
    lo, hi = window
    r0, c0, bh, bw = box
    ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), bw, bh, fill=False, edgecolor=ZOOM_COLOR, linewidth=1.3))
    _bare(ax)
    ax.set_title(name, color=color, fontsize=11, fontweight="bold", pad=14 if any_metrics else 4)
    if subtitle:
        ax.text(0.5, 1.01, subtitle, transform=ax.transAxes, ha="center", va="bottom", fontsize=8)
    if not np.all(np.isfinite(im)):
        ax.text(0.02, 0.02, "non-finite values", transform=ax.transAxes, color="magenta", fontsize=8)


def _draw_zoom_panel(
    zax, im: np.ndarray, window: tuple[float, float], box: tuple[int, int, int, int]
) -> None:
    """Row 2: the zoom box of the image enlarged, framed in the zoom colour."""
    lo, hi = window
    r0, c0, bh, bw = box
    zax.imshow(im[r0 : r0 + bh, c0 : c0 + bw], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    zax.set_xticks([])
    zax.set_yticks([])
    for spine in zax.spines.values():
        spine.set_edgecolor(ZOOM_COLOR)
        spine.set_linewidth(2.0)


def _draw_error_panel(eax, error: np.ndarray | None, err_max: float | None):
    """Row 3: the error map (returns its image), or a label in the reference column (returns ``None``)."""
    _bare(eax)
    if error is None:
        eax.text(
            0.5,
            0.5,
            "error maps\n|rec − ref|  →",
            transform=eax.transAxes,
            ha="center",
            va="center",
            color="#444444",
            fontsize=10,
        )
        return None
    return eax.imshow(error, cmap="inferno", vmin=0.0, vmax=err_max, interpolation="nearest")


def _draw_columns(
    axes,
    columns: list[tuple[str, np.ndarray, bool]],
    window: tuple[float, float],
    box: tuple[int, int, int, int],
    metrics: Mapping[str, Mapping[str, Any]],
    palette: MethodPalette,
    errors: dict[str, np.ndarray],
    err_max: float | None,
):
    """Draw every column's panels; return the last error-map image (for the colour bar) or ``None``."""
    show_err = axes.shape[0] == 3
    err_im = None
    any_metrics = any(_metric_text(metrics.get(name)) for name, _, _ in columns)
    for j, (name, im, is_ref) in enumerate(columns):
        color = REFERENCE_COLOR if is_ref else palette.color(name)
        subtitle = _metric_text(metrics.get(name))
        _draw_image_panel(axes[0, j], name, im, color, window, box, subtitle, any_metrics)
        _draw_zoom_panel(axes[1, j], im, window, box)
        if show_err:
            im_err = _draw_error_panel(axes[2, j], None if is_ref else errors[name], err_max)
            if im_err is not None:
                err_im = im_err
    return err_im


def image_grid_figure(
    images: Mapping[str, Any],
    reference: Any | None = None,
    window: tuple[float, float] | None = None,
    zoom: tuple[int, int, int, int] | None = None,
    error_maps: bool = True,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    palette: MethodPalette | None = None,
    reference_name: str = "reference",
    panel_inches: float = 2.3,
) -> tuple[Figure, dict[str, Any]]:
    """One column per method (reference first): images, enlarged crops, and ``|rec - ref|`` error maps.

    Row 1 shows every image in the same grey window with the zoom box drawn in yellow; row 2 the crop
    enlarged (nearest-neighbour); row 3 (with a reference and ``error_maps``) the absolute error on one shared
    colour scale (0 to the 99.5th percentile of all errors, so one outlier pixel does not wash the maps out)
    with a colour bar. Method names are titled in their palette colour, with PSNR/SSIM/NRMSE from ``metrics``.

    Parameters
    ----------
    images
        Method -> 2D image (array or tensor; the magnitude of complex data is shown), all of one shape.
    reference
        Optional 2D reference of the same shape.
    window
        Grey window (low, high); default the 0.5-99.5 percentiles of the reference (of all images without one).
    zoom
        Crop box (row, col, height, width) in pixels; default :func:`auto_zoom` on the reference (or on the
        first image without one).
    error_maps
        Show the error row (needs ``reference``).
    metrics
        Method -> ``{"psnr": ..., "ssim": ...}`` shown under the method's name.
    palette
        Colours for the titles; default a fresh :class:`MethodPalette`.
    reference_name
        Title of the reference column.
    panel_inches
        Width of one panel in inches.

    Returns
    -------
    (figure, info)
        ``info`` holds the resolved ``window``, ``zoom``, ``error_max`` (colour-bar top, or None) and per-method
        ``mean_abs_error`` (with a reference).
    """
    if not images:
        raise InreconError("image grid has no images", "pass images={'method': array, ...}")
    palette = palette or MethodPalette()
    metrics = metrics or {}
    columns, ref = _grid_columns(images, reference, reference_name)
    shape = columns[0][1].shape
    lo, hi = _grid_window(window, ref, columns)
    box = (
        _check_zoom(zoom, shape) if zoom is not None else auto_zoom(ref if ref is not None else columns[0][1])
    )
    r0, c0, bh, bw = box
    show_err = bool(error_maps and ref is not None)
    errors, err_max = _grid_errors(columns, ref, show_err)
    fig, axes = _grid_axes(shape, box, len(columns), show_err, panel_inches)
    err_im = _draw_columns(axes, columns, (lo, hi), box, metrics, palette, errors, err_max)
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel(f"zoom ×{max(1, round(shape[1] / bw))}", fontsize=9)
    if err_im is not None:
        cbar = fig.colorbar(err_im, ax=list(axes[2, :]), shrink=0.9, pad=0.01, aspect=15)
        cbar.set_label("|rec − ref|", fontsize=9)
        cbar.ax.tick_params(labelsize=8)
    info = {
        "window": [lo, hi],
        "zoom": [r0, c0, bh, bw],
        "error_max": err_max,
        "mean_abs_error": {k: float(np.nanmean(v)) for k, v in errors.items()},
        "shape": list(shape),
    }
    return fig, info


def _check_curve(name: str, curve: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        xs, ys = curve
        x = np.asarray(xs, dtype=np.float64).ravel()
        y = np.asarray(ys, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InreconError(
            f"curve {name!r} is not an (x values, y values) pair of numbers",
            "pass curves={'ngp': (steps, psnrs)}",
        ) from exc
    if x.size != y.size or x.size == 0:
        raise ShapeError(
            f"curve {name!r} has {x.size} x values and {y.size} y values",
            "pass equally long, non-empty lists of x and y values",
        )
    return x, y


def curves_figure(
    curves: Mapping[str, Any],
    xlabel: str = "step",
    ylabel: str = "PSNR (dB)",
    logx: bool = False,
    palette: MethodPalette | None = None,
) -> Figure:
    """One line per method in its palette colour; the legend shows each method's final value.

    Parameters
    ----------
    curves
        Method -> ``(x values, y values)``, e.g. ``(steps, psnr)``.
    xlabel, ylabel
        Axis labels.
    logx
        Logarithmic x axis (x values must be positive).
    palette
        Method colours; default a fresh :class:`MethodPalette`.
    """
    if not curves:
        raise InreconError("no curves given", "pass curves={'method': (x values, y values)}")
    palette = palette or MethodPalette()
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for name, curve in curves.items():
        x, y = _check_curve(str(name), curve)
        if logx and np.any(x <= 0):
            raise InreconError(f"curve {name!r} has x values <= 0 on a log axis", "use logx=False or x >= 1")
        final = y[-1]
        label = f"{name} ({format_number(final)})"
        style = "reference" if is_reference_name(str(name)) else "method"
        ax.plot(
            x,
            y,
            color=palette.color(str(name)),
            linewidth=1.8,
            linestyle="--" if style == "reference" else "-",
            marker="o" if x.size <= 25 else None,
            markersize=3.5,
            label=label,
        )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    outside = len(curves) > 6
    ax.legend(
        title="method (final)",
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        loc="upper left" if outside else "best",
        bbox_to_anchor=(1.01, 1.0) if outside else None,
    )
    return fig


def bars_figure(
    values: Mapping[str, Any], ylabel="seconds", logy=False, palette: MethodPalette | None = None
) -> Figure:
    """One bar per method in its palette colour, value printed on the bar; ``(mean, std)`` adds an error bar.

    ``values`` maps each method to a value or ``(mean, std)``; ``ylabel`` is the axis label (the unit); ``logy``
    draws a logarithmic axis (values must be positive); ``palette`` gives the method colours (default a fresh
    :class:`MethodPalette`).
    """
    if not values:
        raise InreconError("no bar values given", "pass values={'method': seconds}")
    palette = palette or MethodPalette()
    names, means, stds = [], [], []
    for name, v in values.items():
        if isinstance(v, tuple | list):
            if len(v) != 2:
                raise InreconError(f"bar {name!r} is {v!r}", "pass a number or a (mean, std) pair")
            m, s = float(v[0]), float(v[1])
        else:
            m, s = float(v), 0.0
        if logy and not m > 0:
            raise InreconError(f"bar {name!r} has value {m} <= 0 on a log axis", "use logy=False")
        names.append(str(name))
        means.append(m)
        stds.append(s)
    width = max(4.5, 0.9 * len(names) + 1.5)
    fig = Figure(figsize=(min(width, 11.0), 3.8), layout="constrained")
    ax = fig.subplots()
    pos = np.arange(len(names))
    ax.bar(pos, means, color=[palette.color(n) for n in names], edgecolor="white")
    tops = []
    for i, (m, sd) in enumerate(zip(means, stds)):
        if sd > 0:  # error bars only where a spread was given (no zero-height caps)
            ax.errorbar(pos[i], m, yerr=sd, color="#222222", capsize=4, linewidth=1.2)
        tops.append(m + sd)
        label = f"{m:.3g} ± {sd:.2g}" if sd > 0 else f"{m:.3g}"
        ax.annotate(
            label,
            (pos[i], m + sd),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(
        pos, names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center"
    )
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.12)
    return fig


def figure_png(fig: Figure, dpi: int = 150) -> tuple[bytes, tuple[float, float]]:
    """Render ``fig`` to PNG bytes with the Agg renderer; also return its size in inches (width, height).

    The figure is not closed: one made by :func:`image_grid_figure` and friends is garbage once dropped, and a
    user's pyplot figure stays theirs to close.
    """
    size = tuple(float(v) for v in fig.get_size_inches())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    return buf.getvalue(), size
