"""Reports for comparing reconstruction methods: one self-contained HTML page, Markdown and JSON.

>>> rep = Report(title="inrecon demo", data_note="Data: built-in phantoms")
>>> rep.add_table("Quality", aggregate(per_case_rows), best={"psnr": "max", "nrmse": "min"})
>>> rep.add_image_grid("Knee, 4x", {"cgsense": x1, "ngp": x2}, reference=ref, metrics=per_method)
>>> rep.add_curves("Convergence", {"ngp": (steps, psnr)})
>>> rep.write("out/report")          # -> out/report/report.html (+ figures/*.png, report.md, report.json)

Sections appear in the order they are added, each with an anchor and an entry in the table of contents;
an "Environment" section (versions, device, CPU/GPU, seeds, date) closes the page. Figures are rendered when
they are added (so bad input fails at once) with matplotlib's Agg renderer, without pyplot
(see :mod:`inrecon.report.figures`). Every file is written atomically; ``report.html`` is written last.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import platform
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from inrecon.data.atomic import atomic_path
from inrecon.errors import InreconError
from inrecon.report.figures import MethodPalette, bars_figure, curves_figure, figure_png, image_grid_figure
from inrecon.report.html import (
    PageSection,
    config_html,
    figure_html,
    kv_table_html,
    png_data_uri,
    render_page,
    render_text,
    slugify,
)
from inrecon.report.tables import aggregate, format_cell, format_mean_std, html_table, markdown_table

__all__ = [
    "DEFAULT_BEST",
    "Report",
    "aggregate",
    "collect_environment",
    "format_cell",
    "format_mean_std",
    "html_table",
    "markdown_table",
]

DEFAULT_BEST = {"psnr": "max", "ssim": "max", "nrmse": "min"}
"""Directions used for metric tables the report builds itself (under image grids)."""

_RESERVED_ANCHORS = {"top", "environment"}


def collect_environment(seeds: Any = None, device: str | None = None, **extra: Any) -> dict[str, Any]:
    """Versions, device, CPU/GPU names and the date, for :meth:`Report.set_environment`.

    Parameters
    ----------
    seeds
        The run's seed(s), recorded as given.
    device
        The device the run used; default ``"cuda"`` when CUDA is available, else ``"cpu"``.
    **extra
        More entries (e.g. ``threads=4``, ``git="3f2a..."``).
    """
    import torch

    from inrecon import __version__

    cuda = torch.cuda.is_available()
    env: dict[str, Any] = {
        "inrecon": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "device": device or ("cuda" if cuda else "cpu"),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if seeds is not None:
        env["seeds"] = seeds
    env.update(extra)
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _jsonable(obj: Any) -> Any:
    """A strict-JSON copy: numpy/torch to lists and numbers, NaN/Inf to None, dataclasses to dicts."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, complex | np.complexfloating):
        return {"real": _jsonable(obj.real), "imag": _jsonable(obj.imag)}
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    return str(obj)


def _json_cell(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2:
        return {"mean": _jsonable(value[0]), "std": _jsonable(value[1])}
    return _jsonable(value)


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


def _write(path: Path, data: bytes) -> None:
    """Atomic write (see :func:`inrecon.data.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@dataclasses.dataclass
class _Section:
    kind: str
    name: str
    anchor: str
    caption: str = ""
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    png: bytes | None = None

    @property
    def figure(self) -> str | None:
        return f"figures/{self.anchor}.png" if self.png is not None else None


class Report:
    """Collects sections and writes ``report.html``, ``figures/*.png``, ``report.md`` and ``report.json``.

    Parameters
    ----------
    title
        Page title.
    subtitle
        One line under the title (e.g. the data set and acceleration).
    data_note
        Where the data came from, shown highlighted under the title (e.g. "built-in phantoms").
    dpi
        Resolution of the PNG figures.
    colors
        Optional method -> colour overrides for the palette shared by all figures and tables.
    """

    def __init__(
        self,
        title: str,
        subtitle: str = "",
        data_note: str = "",
        dpi: int = 150,
        colors: Mapping[str, str] | None = None,
    ):
        self.title = str(title)
        self.subtitle = str(subtitle)
        self.data_note = str(data_note)
        self.dpi = int(dpi)
        self.palette = MethodPalette(colors)
        self._sections: list[_Section] = []
        self._environment: dict[str, Any] | None = None

    # ----------------------------------------------------------------- adding sections
    def _new(self, kind: str, name: str, caption: str = "", **payload: Any) -> _Section:
        base = slugify(name)
        anchor, k = base, 2
        taken = {s.anchor for s in self._sections} | _RESERVED_ANCHORS
        while anchor in taken:
            anchor, k = f"{base}-{k}", k + 1
        section = _Section(kind, str(name), anchor, str(caption), payload)
        self._sections.append(section)
        return section

    def _figure(self, kind: str, name: str, fig: Figure, caption: str, **payload: Any) -> str:
        png, _ = figure_png(fig, self.dpi)
        section = self._new(kind, name, caption, **payload)
        section.png = png
        return section.anchor

    def add_text(self, heading: str, text: str) -> str:
        """A section of short paragraphs; ``text`` is plain text or a small Markdown subset (escaped).

        Returns the section's anchor (as for every ``add_*`` method).
        """
        return self._new("text", heading, text=str(text)).anchor

    def add_table(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        caption: str = "",
        best: Mapping[str, str] | None = None,
        digits: Mapping[str, int] | None = None,
    ) -> str:
        """A results table; ``(mean, std)`` cells read ``mean ± std``, the best cell per ``best`` column is bold.

        Parameters
        ----------
        name
            Section heading.
        rows
            One dict per row (e.g. from :func:`aggregate`).
        columns
            Column order; default all keys in first-seen order.
        caption
            Text above the table.
        best
            Column -> ``"max"`` or ``"min"``, e.g. ``{"psnr": "max", "ssim": "max", "nrmse": "min"}``.
        digits
            Column -> decimal places (default automatic).
        """
        rows = [dict(r) for r in rows]
        markdown_table(rows, columns, best, digits)  # validates now rather than at write time
        return self._new(
            "table",
            name,
            caption,
            rows=rows,
            columns=list(columns) if columns else None,
            best=dict(best or {}),
            digits=dict(digits or {}),
        ).anchor

    def add_image_grid(
        self,
        name: str,
        images: Mapping[str, Any],
        reference: Any | None = None,
        window: tuple[float, float] | None = None,
        zoom: tuple[int, int, int, int] | None = None,
        error_maps: bool = True,
        metrics: Mapping[str, Mapping[str, Any]] | None = None,
        caption: str = "",
        reference_name: str = "reference",
    ) -> str:
        """Images side by side (reference first) with a zoomed crop row and ``|rec - ref|`` error maps.

        See :func:`inrecon.report.figures.image_grid_figure`: one grey ``window`` for all images (default the
        0.5-99.5 percentiles of the reference), ``zoom=(row, col, height, width)`` in pixels (default: the
        square a quarter of the image wide with the most reference gradient, see
        :func:`~inrecon.report.figures.auto_zoom`), one colour scale for all error maps. ``metrics`` (method
        -> ``{"psnr": ..., "ssim": ...}``) are printed under each name and tabulated below the figure.
        """
        fig, info = image_grid_figure(
            images, reference, window, zoom, error_maps, metrics, self.palette, reference_name
        )
        return self._figure(
            "images",
            name,
            fig,
            caption,
            methods=[str(k) for k in images],
            reference=reference is not None,
            reference_name=reference_name,
            metrics={str(k): dict(v) for k, v in (metrics or {}).items()},
            **info,
        )

    def add_curves(
        self,
        name: str,
        curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
        xlabel: str = "step",
        ylabel: str = "PSNR (dB)",
        caption: str = "",
        logx: bool = False,
    ) -> str:
        """Convergence curves, one line per method: ``curves[method] = (x values, y values)``."""
        fig = curves_figure(curves, xlabel, ylabel, logx, self.palette)
        data = {str(k): {"x": _jsonable(list(v[0])), "y": _jsonable(list(v[1]))} for k, v in curves.items()}
        return self._figure(
            "curves", name, fig, caption, xlabel=xlabel, ylabel=ylabel, logx=logx, curves=data
        )

    def add_bars(
        self,
        name: str,
        values: Mapping[str, float | tuple[float, float]],
        ylabel: str = "seconds",
        caption: str = "",
        logy: bool = False,
    ) -> str:
        """A bar per method (e.g. run time); ``(mean, std)`` values get error bars."""
        fig = bars_figure(values, ylabel, logy, self.palette)
        data = {
            str(k): (tuple(float(x) for x in v) if isinstance(v, tuple | list) else float(v))
            for k, v in values.items()
        }
        return self._figure("bars", name, fig, caption, ylabel=ylabel, logy=logy, values=data)

    def add_figure(self, name: str, fig: Figure, caption: str = "") -> str:
        """Any matplotlib figure (e.g. PCA images of learned features); it is rendered now, not closed."""
        if not hasattr(fig, "savefig"):
            raise InreconError(
                f"add_figure got {type(fig).__name__}, not a matplotlib figure", "pass a Figure"
            )
        return self._figure("figure", name, fig, caption)

    def add_config(self, name: str, config: Any) -> str:
        """A configuration (dict or dataclass) as pretty-printed JSON in a collapsible block (a snapshot)."""
        return self._new("config", name, config=_jsonable(config)).anchor

    def set_environment(self, environment: Mapping[str, Any]) -> None:
        """Record the run's environment (see :func:`collect_environment`); without it, :meth:`write` collects
        one itself and marks it ``"collected": "at report write time"``."""
        self._environment = _jsonable(dict(environment))

    # ----------------------------------------------------------------- output
    def _environment_now(self) -> dict[str, Any]:
        if self._environment is not None:
            return self._environment
        return _jsonable({**collect_environment(), "collected": "at report write time"})

    def to_dict(self, environment: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything JSON-able: title, environment and each section's data (tables, curves, config, ...)."""
        sections = []
        for s in self._sections:
            entry: dict[str, Any] = {"kind": s.kind, "name": s.name, "anchor": s.anchor, "caption": s.caption}
            if s.kind == "table":
                rows = s.payload["rows"]
                entry["columns"] = s.payload["columns"] or list(dict.fromkeys(k for r in rows for k in r))
                entry["best"] = s.payload["best"]
                entry["rows"] = [{str(k): _json_cell(v) for k, v in r.items()} for r in rows]
            else:
                entry.update({k: _jsonable(v) for k, v in s.payload.items()})
                if s.kind == "bars":
                    entry["values"] = {k: _json_cell(v) for k, v in s.payload["values"].items()}
            if s.figure:
                entry["figure"] = s.figure
            sections.append(entry)
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "data_note": self.data_note,
            "environment": dict(environment) if environment is not None else self._environment_now(),
            "sections": sections,
        }

    def _metrics_rows(self, s: _Section) -> list[dict[str, Any]]:
        return [{"method": m, **vals} for m, vals in s.payload["metrics"].items()]

    def _section_html(self, s: _Section, embed: bool) -> str:
        p = s.payload
        if s.kind == "text":
            return render_text(p["text"])
        if s.kind == "table":
            table = html_table(p["rows"], p["columns"], p["best"], s.caption, p["digits"], self.palette)
            return f'<div class="table-wrap">{table}</div>'
        if s.kind == "config":
            return config_html(p["config"], summary=f"{s.name}: configuration (JSON)")
        body = ""
        if s.png is not None:
            w, h = _png_size(s.png)
            scale = 96 / self.dpi
            src = png_data_uri(s.png) if embed else s.figure
            body = figure_html(src, s.name, s.caption, round(w * scale), round(h * scale), link=not embed)
        if s.kind == "images" and p["metrics"]:
            rows = self._metrics_rows(s)
            table = html_table(rows, None, DEFAULT_BEST, "", None, self.palette)
            body += f'<div class="table-wrap">{table}</div>'
        return body

    def _section_markdown(self, s: _Section) -> str:
        p = s.payload
        out = [f"## {s.name}", ""]
        if s.kind == "text":
            out.append(p["text"])
        elif s.kind == "table":
            if s.caption:
                out += [f"*{s.caption}*", ""]
            out.append(markdown_table(p["rows"], p["columns"], p["best"], p["digits"]))
        elif s.kind == "config":
            out += ["```json", json.dumps(p["config"], indent=2, ensure_ascii=False), "```"]
        else:
            out.append(f"![{s.name}]({s.figure})")
            if s.caption:
                out += ["", f"*{s.caption}*"]
            if s.kind == "images" and p["metrics"]:
                out += ["", markdown_table(self._metrics_rows(s), None, DEFAULT_BEST)]
            elif s.kind == "curves":
                rows = [
                    {"method": m, f"final {p['xlabel']}": c["x"][-1], f"final {p['ylabel']}": c["y"][-1]}
                    for m, c in p["curves"].items()
                ]
                out += ["", markdown_table(rows)]
            elif s.kind == "bars":
                out += ["", markdown_table([{"method": m, p["ylabel"]: v} for m, v in p["values"].items()])]
        return "\n".join(out).rstrip() + "\n"

    def render_markdown(self, environment: Mapping[str, Any] | None = None) -> str:
        """``report.md``: the same tables as Markdown, figure links, config blocks and the environment."""
        env = dict(environment) if environment is not None else self._environment_now()
        head = [f"# {self.title}", ""]
        if self.subtitle:
            head += [self.subtitle, ""]
        if self.data_note:
            head += [f"> {self.data_note}", ""]
        parts = ["\n".join(head)] + [self._section_markdown(s) for s in self._sections]
        env_rows = [
            {"key": k, "value": v if isinstance(v, str | int | float) else json.dumps(v)}
            for k, v in env.items()
        ]
        parts.append("## Environment\n\n" + markdown_table(env_rows, ["key", "value"]))
        return "\n".join(parts)

    def render_html(self, embed: bool = False, environment: Mapping[str, Any] | None = None) -> str:
        """The HTML page as a string (figures as ``figures/<anchor>.png`` or, with ``embed``, data URIs)."""
        env = dict(environment) if environment is not None else self._environment_now()
        sections = [
            PageSection(s.anchor, s.name, s.kind, self._section_html(s, embed)) for s in self._sections
        ]
        sections.append(PageSection("environment", "Environment", "environment", kv_table_html(env)))
        meta = " · ".join(
            str(x)
            for x in (
                f"generated {env['date']}" if env.get("date") else None,
                f"inrecon {env['inrecon']}" if env.get("inrecon") else None,
                f"device {env['device']}" if env.get("device") else None,
                env.get("gpu") or None,
            )
            if x
        )
        footer = "Made with inrecon. Self-contained page: works offline" + (
            "; figures embedded." if embed else "; figures in figures/ beside this file."
        )
        return render_page(self.title, sections, self.subtitle, self.data_note, meta, footer=footer)

    def write(self, out_dir: str | os.PathLike, embed: bool = False) -> Path:
        """Write ``figures/*.png``, ``report.md``, ``report.json`` and (last) ``report.html`` into ``out_dir``.

        Parameters
        ----------
        out_dir
            Output folder, created if needed. Existing files of the same names are replaced atomically; other
            files are left alone.
        embed
            Inline the PNGs into the HTML as base64 data URIs (one file to mail around); the PNG files are
            written either way, for the Markdown.

        Returns
        -------
        Path
            ``out_dir / "report.html"``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        env = self._environment_now()
        for s in self._sections:
            if s.png is not None:
                _write(out / s.figure, s.png)
        _write(out / "report.md", self.render_markdown(env).encode("utf-8"))
        text = json.dumps(self.to_dict(env), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        _write(out / "report.json", text.encode("utf-8"))
        html_path = out / "report.html"
        _write(html_path, self.render_html(embed, env).encode("utf-8"))
        return html_path
