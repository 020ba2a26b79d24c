"""Result tables: mean ± std aggregation, number formatting, best-value highlighting, Markdown and HTML.

A table is a list of row dicts. A cell is a number, a string, ``None`` (rendered as an empty cell) or a
``(mean, std)`` tuple, rendered ``"mean ± std"`` with the std at the precision of the mean. ``best`` maps a
column to ``"max"`` or ``"min"``; the best numeric cell of that column (by the mean for tuples; every cell when
tied; NaN never wins) is rendered bold. Columns with a direction get an arrow in their header (↑ higher is
better, ↓ lower is better).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from inrecon.errors import InreconError

__all__ = [
    "aggregate",
    "best_cells",
    "format_cell",
    "format_mean_std",
    "format_number",
    "html_table",
    "infer_columns",
    "markdown_table",
]

_DIRECTIONS = {"max": "max", "higher": "max", "min": "min", "lower": "min"}
_ARROW = {"max": "↑", "min": "↓"}
_ARROW_TITLE = {"max": "higher is better", "min": "lower is better"}


def format_mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard deviation of ``values``.

    The std is the sample standard deviation (``ddof=1``) over two or more values and 0 for a single value.
    NaN values are kept, so a failed case makes the mean NaN rather than silently improving it.

    Parameters
    ----------
    values
        Numbers, e.g. the PSNR of one method over all test cases.

    Returns
    -------
    (mean, std)
        Plain Python floats.
    """
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    if arr.size == 0:
        raise InreconError("format_mean_std got no values", "pass at least one number")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def _decimals(x: float) -> int:
    """Decimal places that show ~4 significant digits for |x| in [0.01, 1000) and none for larger values."""
    ax = abs(x)
    if ax >= 1000:
        return 0
    if ax >= 100:
        return 1
    if ax >= 1:
        return 2
    return 4


def format_number(x: Any, digits: int | None = None) -> str:
    """Format one number for a table: ints as is, floats with ``digits`` decimals or an automatic precision.

    The automatic precision is 2 decimals in [1, 100) (PSNR in dB, seconds), 4 below 1 (SSIM, NRMSE), 1 in
    [100, 1000), none above; values below 0.01 use 3 significant digits (``1.23e-05``). NaN is ``"nan"``.
    """
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if digits is None:
        if x != 0 and abs(x) < 0.01:
            return f"{x:.3g}"
        digits = _decimals(x)
    return f"{x:.{digits}f}"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _check_pair(value: tuple, column: str) -> tuple[float, float]:
    if len(value) != 2 or not all(_is_number(v) for v in value):
        raise InreconError(
            f"table cell in column {column!r} is the tuple {value!r}, but tuples must be (mean, std) numbers",
            "pass a number, a string or a (mean, std) tuple, e.g. format_mean_std(values)",
        )
    return float(value[0]), float(value[1])


def format_cell(value: Any, digits: int | None = None, column: str = "") -> str:
    """Text of one cell: ``(mean, std)`` -> ``"mean ± std"`` (std at the mean's precision), ``None`` -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        mean, std = _check_pair(value, column)
        if digits is None and math.isfinite(mean) and not (mean != 0 and abs(mean) < 0.01):
            digits = _decimals(mean)
        return f"{format_number(mean, digits)} ± {format_number(std, digits)}"
    if _is_number(value):
        return format_number(value, digits)
    return str(value)


def _sort_value(value: Any, column: str) -> float | None:
    """The number a cell competes with for 'best' (the mean of a tuple); ``None`` for text and NaN."""
    if isinstance(value, tuple):
        v = _check_pair(value, column)[0]
    elif _is_number(value):
        v = float(value)
    else:
        return None
    return None if math.isnan(v) else v


def infer_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def _check_best(best: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    for column, direction in (best or {}).items():
        d = _DIRECTIONS.get(str(direction).lower())
        if d is None:
            raise InreconError(
                f"best[{column!r}] is {direction!r}, which is not a direction",
                'use "max" (higher is better) or "min" (lower is better)',
            )
        out[column] = d
    return out


def best_cells(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], best: Mapping[str, str] | None
) -> dict[str, set[int]]:
    """Row indices of the best cell(s) per column named in ``best`` (ties all win; text and NaN never do)."""
    directions = _check_best(best)
    winners: dict[str, set[int]] = {}
    for column, direction in directions.items():
        if column not in columns:
            continue
        scored = [(i, _sort_value(row.get(column), column)) for i, row in enumerate(rows)]
        scored = [(i, v) for i, v in scored if v is not None]
        if not scored:
            continue
        target = max(v for _, v in scored) if direction == "max" else min(v for _, v in scored)
        winners[column] = {i for i, v in scored if v == target}
    return winners


def _prepare(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None, best: Mapping[str, str] | None
) -> tuple[list[str], dict[str, str], dict[str, set[int]]]:
    if not isinstance(rows, Sequence) or any(not isinstance(r, Mapping) for r in rows):
        raise InreconError(
            "table rows must be a list of dicts", "pass rows=[{'method': 'cgsense', 'psnr': 31.2}]"
        )
    cols = list(columns) if columns is not None else infer_columns(rows)
    directions = _check_best(best)
    return cols, directions, best_cells(rows, cols, directions)


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    best: Mapping[str, str] | None = None,
    digits: Mapping[str, int] | None = None,
) -> str:
    """A GitHub-flavoured Markdown table; best cells in bold, numeric columns right-aligned.

    Parameters
    ----------
    rows
        One dict per row; missing keys give empty cells.
    columns
        Column order; default :func:`infer_columns`.
    best
        Column -> ``"max"`` or ``"min"``.
    digits
        Column -> decimal places (default: automatic, see :func:`format_number`).
    """
    cols, directions, winners = _prepare(rows, columns, best)
    digits = dict(digits or {})
    header = [_md_escape(c) + (f" {_ARROW[directions[c]]}" if c in directions else "") for c in cols]
    numeric = [any(_sort_value(r.get(c), c) is not None for r in rows) for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for i, row in enumerate(rows):
        cells = []
        for c in cols:
            text = _md_escape(format_cell(row.get(c), digits.get(c), c))
            cells.append(f"**{text}**" if i in winners.get(c, ()) and text else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def html_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    best: Mapping[str, str] | None = None,
    caption: str = "",
    digits: Mapping[str, int] | None = None,
    color_of: Callable[[str], str | None] | None = None,
    label_column: str | None = None,
) -> str:
    """An HTML ``<table>`` (escaped); best cells get ``class="best"`` and ``<strong>``.

    Parameters
    ----------
    rows, columns, best, digits
        As in :func:`markdown_table`.
    caption
        Text of the ``<caption>``.
    color_of
        Optional ``name -> CSS colour``; cells of ``label_column`` get a colour swatch (the method's figure
        colour), so tables and figures read together.
    label_column
        The column holding method names (default: ``"method"`` when present, else the first column).
    """
    cols, directions, winners = _prepare(rows, columns, best)
    digits = dict(digits or {})
    if label_column is None and cols:
        label_column = "method" if "method" in cols else cols[0]
    out = ['<table class="results">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>")
    for c in cols:
        arrow = ""
        if c in directions:
            d = directions[c]
            arrow = f' <span class="dir" title="{_ARROW_TITLE[d]}">{_ARROW[d]}</span>'
        out.append(f'<th scope="col">{html.escape(c)}{arrow}</th>')
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        out.append("<tr>")
        for c in cols:
            value = row.get(c)
            text = html.escape(format_cell(value, digits.get(c), c))
            classes = []
            if _is_number(value) or isinstance(value, tuple):
                classes.append("num")
            if i in winners.get(c, ()):
                classes.append("best")
                text = f"<strong>{text}</strong>"
            if c == label_column and color_of is not None and isinstance(value, str):
                color = color_of(value)
                if color:
                    text = f'<span class="swatch" style="background:{html.escape(color)}"></span>{text}'
            cls = f' class="{" ".join(classes)}"' if classes else ""
            tag = "th" if c == label_column else "td"
            scope = ' scope="row"' if tag == "th" else ""
            out.append(f"<{tag}{scope}{cls}>{text}</{tag}>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    by: str = "method",
    metrics: Sequence[str] = ("psnr", "ssim", "nrmse"),
) -> list[dict[str, Any]]:
    """Turn per-case rows into one row per ``by`` value with ``(mean, std)`` per metric and a case count ``n``.

    Groups keep their first-seen order. A metric missing from some rows is averaged over the rows that have
    it; a metric missing from all rows of a group is left out of that group's row.

    Parameters
    ----------
    rows
        E.g. ``[{"method": "cgsense", "case": 3, "psnr": 31.2, "ssim": 0.91}, ...]``.
    by
        The grouping key.
    metrics
        Keys to aggregate (numeric values).

    Returns
    -------
    list of dict
        ``[{"method": "cgsense", "n": 12, "psnr": (31.0, 0.8), "ssim": (0.90, 0.02)}, ...]``.
    """
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        if by not in row:
            raise InreconError(f"a row has no {by!r} key: {dict(row)!r}", f"give every row a {by!r} value")
        groups.setdefault(row[by], []).append(row)
    out = []
    for key, members in groups.items():
        agg: dict[str, Any] = {by: key, "n": len(members)}
        for m in metrics:
            values = [r[m] for r in members if m in r and r[m] is not None]
            if not values:
                continue
            if not all(_is_number(v) for v in values):
                raise InreconError(
                    f"metric {m!r} of {by}={key!r} has non-numeric values {values!r}",
                    "pass numbers for the aggregated metrics",
                )
            agg[m] = format_mean_std(values)
        out.append(agg)
    return out
