"""The report: tables (mean ± std, best cells, Markdown), figures, the written HTML/MD/JSON, a headless browser."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from inrecon.errors import InreconError, ShapeError
from inrecon.report import Report, aggregate, collect_environment, format_mean_std, markdown_table
from inrecon.report.figures import REFERENCE_COLOR, MethodPalette, auto_zoom, image_grid_figure, method_color
from inrecon.report.html import render_text, slugify
from inrecon.report.tables import best_cells, format_cell, format_number, html_table
from tests import browser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ("cgsense", "l1wavelet", "NGP", "DisINR")
BEST = {"psnr": "max", "ssim": "max", "nrmse": "min"}


# ----------------------------------------------------------------------------- helpers
class _Page(HTMLParser):
    """Collects what the tests look at: ids, links, images, scripts and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: list[list[tuple[str, str]]] = []  # per <tr>: (class, text) of each cell
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th") and self.rows:
            self._cell = [a.get("class", ""), ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((self._cell[0], self._cell[1].strip()))
            self._cell = None


def parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    page.close()
    return page


def disc_phantom(n: int = 96) -> np.ndarray:
    yy, xx = (np.mgrid[:n, :n] + 0.5) / n - 0.5
    img = 0.8 * (np.hypot(yy, xx) < 0.42)
    img += 0.2 * (np.hypot(yy - 0.12, xx + 0.1) < 0.1)
    return img


def per_case_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for i, m in enumerate(METHODS):
        for case in range(4):
            rows.append(
                {
                    "method": m,
                    "case": case,
                    "psnr": 28.0 + 1.5 * i + rng.normal(0, 0.3),
                    "ssim": 0.80 + 0.03 * i + rng.normal(0, 0.005),
                    "nrmse": 0.12 - 0.02 * i + rng.normal(0, 0.002),
                }
            )
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A report with every section type, written once: (report, out_dir, html_path)."""
    rng = np.random.default_rng(7)
    ref = disc_phantom()
    images = {m: ref + (0.08 - 0.015 * i) * rng.standard_normal(ref.shape) for i, m in enumerate(METHODS)}
    images["DisINR"] = images["DisINR"].astype(np.complex64) * np.exp(0.3j)  # complex -> magnitude shown
    metrics = {m: {"psnr": 28.0 + 1.5 * i, "ssim": 0.80 + 0.03 * i} for i, m in enumerate(METHODS)}

    rep = Report(
        "inrecon demo",
        subtitle="4x Cartesian, 8 coils",
        data_note="Data: built-in phantoms (no real data found)",
    )
    rep.add_text("Summary", "DisINR **wins**.\n\n- item with `code`\n- <b>not bold</b>")
    rep.add_table("Quality", aggregate(per_case_rows(rng)), caption="mean ± std over 4 cases", best=BEST)
    rep.add_image_grid("Disc phantom", images, reference=ref, metrics=metrics, caption="grey window [0, 1]")
    rep.add_image_grid(
        "Random images", {"a": rng.random((40, 56)), "b": rng.random((40, 56))}, error_maps=False
    )
    steps = list(range(0, 200, 10))
    curves = {
        m: (steps, [20 + (5 + i) * (1 - np.exp(-s / 50)) for s in steps]) for i, m in enumerate(METHODS)
    }
    rep.add_curves("Convergence", curves)
    rep.add_bars(
        "Run time", {"cgsense": 1.5, "l1wavelet": (4.0, 0.5), "NGP": 30.0, "DisINR": (45.0, 3.0)}, logy=True
    )
    fig = Figure(figsize=(3, 2))
    fig.subplots().imshow(rng.random((8, 8)))
    rep.add_figure("PCA of features", fig, caption="custom figure")
    rep.add_config(
        "Config", {"method": "ngp", "lr": 1e-3, "steps": 200, "path": Path("/tmp/x"), "nan": float("nan")}
    )
    rep.set_environment(collect_environment(seeds=[0, 1], device="cpu"))
    out = tmp_path_factory.mktemp("report") / "nested" / "out"
    html_path = rep.write(out)
    return rep, out, html_path


# ----------------------------------------------------------------------------- tables
def test_format_mean_std():
    assert format_mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))  # sample std (ddof=1)
    assert format_mean_std([5]) == (5.0, 0.0)
    assert np.isnan(format_mean_std([1.0, float("nan")])[0])  # a failed case is not hidden
    with pytest.raises(InreconError):
        format_mean_std([])


def test_format_cell():
    assert format_cell((31.2345, 0.4567)) == "31.23 ± 0.46"
    assert format_cell((0.91234, 0.01234)) == "0.9123 ± 0.0123"
    assert format_cell((123.45, 6.7)) == "123.5 ± 6.7"
    assert format_cell((0.5, 0.25), digits=1) == "0.5 ± 0.2"
    assert format_cell(7) == "7" and format_cell("x") == "x" and format_cell(None) == ""
    assert format_number(1.234e-5) == "1.23e-05" and format_number(float("nan")) == "nan"
    with pytest.raises(InreconError):
        format_cell((1.0, 2.0, 3.0))


def test_best_cells_directions_ties_nan_text():
    rows = [
        {"m": "a", "psnr": (30.0, 1.0), "nrmse": 0.2, "note": "x"},
        {"m": "b", "psnr": (32.0, 0.5), "nrmse": float("nan"), "note": "y"},
        {"m": "c", "psnr": 32.0, "nrmse": 0.1},
        {"m": "d", "psnr": "n/a", "nrmse": 0.1},
    ]
    winners = best_cells(
        rows, ["m", "psnr", "nrmse", "note"], {"psnr": "max", "nrmse": "lower", "note": "max"}
    )
    assert winners["psnr"] == {1, 2}  # tie between a tuple's mean and a number
    assert winners["nrmse"] == {2, 3}  # NaN never wins
    assert "note" not in winners  # no numbers in a text column
    with pytest.raises(InreconError):
        best_cells(rows, ["psnr"], {"psnr": "biggest"})


def test_markdown_table_exact():
    rows = [
        {"method": "cgsense", "psnr": (30.0, 1.0), "nrmse": 0.1234},
        {"method": "ngp|v2", "psnr": (31.5, 0.5), "nrmse": 0.0999},
    ]
    expected = (
        "| method | psnr ↑ | nrmse ↓ |\n"
        "|---|---:|---:|\n"
        "| cgsense | 30.00 ± 1.00 | 0.1234 |\n"
        "| ngp\\|v2 | **31.50 ± 0.50** | **0.0999** |\n"
    )
    assert markdown_table(rows, best={"psnr": "max", "nrmse": "min"}) == expected


def test_html_table_best_and_escaping():
    rows = [{"method": "<x>", "psnr": (30.0, 1.0)}, {"method": "ngp", "psnr": (31.0, 1.0)}]
    table = html_table(rows, best={"psnr": "max"}, caption="a & b", color_of=method_color)
    assert "&lt;x&gt;" in table and "<x>" not in table and "a &amp; b" in table
    page = parse(table)
    body = [r for r in page.rows if r and "num" in "".join(c for c, _ in r)]
    assert [("best" in cls) for cls, _ in body[0]] == [False, False]
    assert body[1][1] == ("num best", "31.00 ± 1.00")
    assert f"background:{method_color('ngp')}" in table


def test_aggregate_groups_in_order_with_counts():
    rows = [
        {"method": "b", "psnr": 30.0, "ssim": 0.8},
        {"method": "a", "psnr": 20.0},
        {"method": "b", "psnr": 32.0, "ssim": 0.9},
        {"method": "a", "psnr": 22.0},
    ]
    out = aggregate(rows)
    assert [r["method"] for r in out] == ["b", "a"]
    assert out[0]["n"] == 2 and out[0]["psnr"] == pytest.approx((31.0, np.sqrt(2.0)))
    assert out[0]["ssim"] == pytest.approx((0.85, np.std([0.8, 0.9], ddof=1)))
    assert "ssim" not in out[1] and "nrmse" not in out[0]
    with pytest.raises(InreconError):
        aggregate([{"psnr": 1.0}])


# ----------------------------------------------------------------------------- figures
def test_palette_is_consistent_and_reference_grey():
    pal = MethodPalette()
    assert pal("CG-SENSE") == pal("cgsense") == method_color("cgsense")
    assert pal("Ground truth") == pal("reference") == REFERENCE_COLOR
    unknown = [pal(f"method-{i}") for i in range(5)]
    assert len(set(unknown)) == 5 and REFERENCE_COLOR not in unknown
    assert pal("method-0") == unknown[0]  # stable on repeat
    assert MethodPalette({"ngp": "black"})("NGP") == "#000000"


def test_auto_zoom_finds_the_detailed_region():
    rng = np.random.default_rng(0)
    img = np.zeros((80, 120))
    img[50:70, 10:30] = rng.random((20, 20))  # texture at rows 50-70, cols 10-30
    r, c, h, w = auto_zoom(img)
    assert (h, w) == (20, 20)
    assert abs(r - 50) <= 3 and abs(c - 10) <= 3
    assert auto_zoom(img, size=500)[2:] == (80, 80)  # clipped to the shorter side


def test_image_grid_checks_input():
    ref = disc_phantom(32)
    with pytest.raises(ShapeError):
        image_grid_figure({"a": ref[:30]}, reference=ref)
    with pytest.raises(ShapeError):
        image_grid_figure({"a": np.stack([ref, ref])})
    with pytest.raises(InreconError):
        image_grid_figure({"a": ref}, zoom=(30, 30, 8, 8))
    with pytest.raises(InreconError):
        image_grid_figure({})
    fig, info = image_grid_figure({"a": ref + 0.1, "b": ref}, reference=ref, zoom=(4, 4, 8, 8))
    assert info["zoom"] == [4, 4, 8, 8] and info["mean_abs_error"]["a"] == pytest.approx(0.1)
    assert (
        info["mean_abs_error"]["b"] == 0.0 and len(fig.axes) == 3 * 3 + 1
    )  # 3 rows x 3 columns + colour bar


def test_figures_leave_pyplot_alone():
    import matplotlib.pyplot as plt

    backend, fignums = matplotlib.get_backend(), plt.get_fignums()
    rep = Report("t")
    rep.add_curves("c", {"a": ([1, 2], [3, 4])}, logx=True)
    rep.add_bars("b", {"a": 1.0})
    assert matplotlib.get_backend() == backend and plt.get_fignums() == fignums
    with pytest.raises(InreconError):
        rep.add_curves("c", {"a": ([0, 1], [3, 4])}, logx=True)
    with pytest.raises(ShapeError):
        rep.add_curves("c", {"a": ([1, 2, 3], [3, 4])})


# ----------------------------------------------------------------------------- html helpers
def test_render_text_escapes_and_formats():
    out = render_text(
        "Hello <script>alert(1)</script> **bold** *it* `a<b`\n\n- one\n- [two](https://x.org/?a=1&b=2)"
    )
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<strong>bold</strong>" in out and "<em>it</em>" in out and "<code>a&lt;b</code>" in out
    assert "<ul><li>one</li>" in out and '<a href="https://x.org/?a=1&amp;b=2">two</a>' in out
    assert "<a" not in render_text("[x](javascript:alert(1))")
    assert slugify("PSNR vs step (knee, 4x)") == "psnr-vs-step-knee-4x" and slugify("±") == "section"


def test_anchors_are_unique():
    rep = Report("t")
    anchors = [rep.add_text("Results", "a"), rep.add_text("Results", "b"), rep.add_text("Environment", "c")]
    assert anchors == ["results", "results-2", "environment-2"]


# ----------------------------------------------------------------------------- the written report
def test_write_creates_all_files(built):
    _, out, html_path = built
    assert html_path == out / "report.html"
    for name in ("report.html", "report.md", "report.json"):
        assert (out / name).stat().st_size > 0
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == sorted(
        ["disc-phantom.png", "random-images.png", "convergence.png", "run-time.png", "pca-of-features.png"]
    )
    assert not list(out.glob(".*")) and not list((out / "figures").glob(".*"))  # no temporary files left


def test_html_is_self_contained_and_images_valid(built):
    _, out, html_path = built
    text = html_path.read_text(encoding="utf-8")
    page = parse(text)
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    # no external resources: no <link>, no <script src>, images relative
    assert not [a for t, a in page.tags if t == "link" or (t == "script" and "src" in a)]
    assert not re.search(r"""(src|href)=["'](https?:)?//""", text)
    assert len(page.imgs) == 5
    for src in page.imgs:
        assert src.startswith("figures/")
        data = (out / src).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert imread(out / src).shape[0] > 50  # decodes
    # table of contents points at sections that exist, environment last
    toc = [h[1:] for h in page.hrefs if h.startswith("#") and h != "#top"]
    assert set(toc) <= page.ids and "environment" in page.ids
    assert "data-images-ok" in text and "naturalWidth" in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text


def test_html_highlights_best_cells(built):
    _, _, html_path = built
    page = parse(html_path.read_text(encoding="utf-8"))
    header_idx = next(i for i, r in enumerate(page.rows) if [t for _, t in r][:2] == ["method", "n"])
    header = [t.split()[0] for _, t in page.rows[header_idx]]
    body = page.rows[header_idx + 1 : header_idx + 1 + len(METHODS)]
    assert [r[0][1] for r in body] == list(METHODS)
    for metric in ("psnr", "ssim", "nrmse"):
        col = header.index(metric)
        best_rows = [r[0][1] for r in body if "best" in r[col][0]]
        assert best_rows == ["DisINR"], (
            metric
        )  # DisINR is best by construction (highest psnr/ssim, lowest nrmse)
        assert re.fullmatch(r"\d+\.\d+ ± \d+\.\d+", body[0][col][1])


def test_markdown_output(built):
    _, out, _ = built
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# inrecon demo\n")
    assert "| method | n | psnr ↑ | ssim ↑ | nrmse ↓ |" in md
    assert re.search(r"\| DisINR \| 4 \| \*\*\d+\.\d+ ± \d+\.\d+\*\* \|", md)
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file()
    assert '```json\n{\n  "method": "ngp"' in md and "## Environment" in md and "| seeds | [0, 1] |" in md


def test_json_output(built):
    rep, out, _ = built

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads((out / "report.json").read_text(encoding="utf-8"), parse_constant=no_constants)
    assert data["title"] == "inrecon demo" and data["environment"]["seeds"] == [0, 1]
    kinds = [s["kind"] for s in data["sections"]]
    assert kinds == ["text", "table", "images", "images", "curves", "bars", "figure", "config"]
    table = data["sections"][1]
    assert table["best"] == BEST and set(table["rows"][0]["psnr"]) == {"mean", "std"}
    grid = data["sections"][2]
    assert grid["figure"] == "figures/disc-phantom.png" and grid["methods"] == list(METHODS)
    assert len(grid["zoom"]) == 4 and grid["metrics"]["NGP"]["psnr"] == pytest.approx(31.0)
    assert data["sections"][4]["curves"]["NGP"]["x"][:2] == [0, 10]
    assert data["sections"][5]["values"]["l1wavelet"] == {"mean": 4.0, "std": 0.5}
    assert data["sections"][7]["config"] == {
        "method": "ngp",
        "lr": 1e-3,
        "steps": 200,
        "path": "/tmp/x",
        "nan": None,
    }
    assert data == json.loads(json.dumps(rep.to_dict(data["environment"])))


def test_embed_inlines_pngs(built, tmp_path):
    rep, _, _ = built
    html_path = rep.write(tmp_path, embed=True)
    page = parse(html_path.read_text(encoding="utf-8"))
    assert len(page.imgs) == 5
    for src in page.imgs:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix) and base64.b64decode(src[len(prefix) :]).startswith(PNG_MAGIC)
    assert (tmp_path / "figures" / "convergence.png").is_file()  # still written, for the Markdown


def test_environment_collected_when_not_set(tmp_path):
    rep = Report("t")
    rep.add_text("a", "b")
    rep.write(tmp_path)
    env = json.loads((tmp_path / "report.json").read_text())["environment"]
    assert env["collected"] == "at report write time" and {"inrecon", "torch", "device", "date"} <= set(env)


# ----------------------------------------------------------------------------- headless browser
def test_browser_loads_every_image_without_console_errors(built, tmp_path):
    browser.chromium_or_skip()
    _, _, html_path = built
    run = browser.dump_dom(html_path, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    attrs = browser.body_attributes(run.stdout)
    assert attrs.get("data-images-ok") == "true", attrs
    assert attrs.get("data-images-count") == "5" and attrs.get("data-images-broken") == "0"
    assert browser.console_messages(run.stderr) == []  # the page logs nothing, errors or otherwise


def test_browser_screenshot_is_not_blank(built, tmp_path):
    browser.chromium_or_skip()
    _, _, html_path = built
    shot = tmp_path / "screenshot.png"
    run = browser.screenshot(html_path, shot, tmp_path, size=(1280, 1800))
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    stats = browser.image_stats(shot)
    assert (stats["width"], stats["height"]) == (1280, 1800)
    assert stats["std"] > 0.05 and stats["non_white"] > 0.05, stats


def test_browser_check_catches_broken_image_and_js_error(built, tmp_path):
    """Negative control: the same page with one PNG missing and a script that throws must fail both checks."""
    browser.chromium_or_skip()
    _, out, _ = built
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "figures" / "run-time.png").unlink()
    page = broken / "report.html"
    page.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>", '<script>throw new Error("boom")</script></body>'
        ),
        encoding="utf-8",
    )
    run = browser.dump_dom(page, tmp_path)
    attrs = browser.body_attributes(run.stdout)
    assert attrs.get("data-images-ok") == "false" and attrs.get("data-images-broken") == "1", attrs
    errors = browser.console_errors(run.stderr)
    assert errors and "boom" in errors[0], run.stderr[-2000:]
