"""HTML building blocks for the report: one self-contained page (inline CSS, one tiny inline script).

No external fonts, scripts or stylesheets: the page works offline and from a file. Figures are ``<img>`` tags
pointing to ``figures/<name>.png`` beside the page, or base64 ``data:`` URIs when embedded. All user text is
escaped; :func:`render_text` turns a small Markdown subset (paragraphs, ``-`` lists, ``**bold**``,
``*italic*``, ``code`` in backticks, ``[links](https://...)``) into HTML after escaping.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "IMAGE_CHECK_SCRIPT",
    "PageSection",
    "config_html",
    "figure_html",
    "kv_table_html",
    "load_css",
    "png_data_uri",
    "render_page",
    "render_text",
    "slugify",
]

# After `load`, record on <body> whether every image decoded (data-images-ok) and how many there are
# (data-images-count, data-images-broken); headless-browser tests read these from the dumped DOM.
IMAGE_CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  document.body.dataset.imagesOk = broken.length === 0 ? "true" : "false";
  document.body.dataset.imagesCount = String(imgs.length);
  document.body.dataset.imagesBroken = String(broken.length);
});
""".strip()


@dataclass(frozen=True)
class PageSection:
    """One rendered section of the page."""

    anchor: str
    """``id`` of the ``<section>`` (unique in the page)."""
    heading: str
    """Plain-text heading, escaped when rendered."""
    kind: str
    """Section type (``table``, ``images``, ``curves``, ...), used as a CSS class."""
    body: str
    """HTML of the body (already escaped/built)."""


def slugify(text: str, fallback: str = "section") -> str:
    """Lower-case ASCII letters, digits and single hyphens: ``"PSNR vs step (knee)"`` -> ``"psnr-vs-step-knee"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return slug[:60].rstrip("-") or fallback


def load_css() -> str:
    """The report's stylesheet (``report.css`` beside this module)."""
    return resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")


_SAFE_URL = re.compile(r"^(https?://|mailto:|#|\.{0,2}/|[\w.-]+(/|$|#|\.))", re.IGNORECASE)


def _inline(escaped: str) -> str:
    """Inline Markdown on already escaped text."""
    codes: list[str] = []

    def keep_code(m: re.Match) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = re.sub(r"`([^`]+)`", keep_code, escaped)

    def link(m: re.Match) -> str:
        label, url = m.group(1), m.group(2)
        if not _SAFE_URL.match(html.unescape(url)) or html.unescape(url).lower().startswith("javascript:"):
            return m.group(0)
        return f'<a href="{url}">{label}</a>'

    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


_BULLET = re.compile(r"^\s*[-*]\s+")


def render_text(text: str) -> str:
    """Escape ``text`` and render the small Markdown subset described in the module docstring."""
    blocks = re.split(r"\n\s*\n", str(text).strip())
    out = []
    for block in blocks:
        lines = [ln.rstrip() for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(_BULLET.match(ln) for ln in lines):
            items = "".join(f"<li>{_inline(html.escape(_BULLET.sub('', ln)))}</li>" for ln in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(html.escape(' '.join(ln.strip() for ln in lines)))}</p>")
    return "\n".join(out)


def figure_html(
    src: str,
    alt: str,
    caption: str = "",
    width: int | None = None,
    height: int | None = None,
    link: bool = True,
) -> str:
    """A ``<figure>`` with one image (linked to itself for full size unless ``link=False``) and a caption."""
    size = f' width="{int(width)}" height="{int(height)}"' if width and height else ""
    img = f'<img src="{html.escape(src)}" alt="{html.escape(alt)}"{size}>'
    if link:
        img = f'<a href="{html.escape(src)}" title="open full size">{img}</a>'
    cap = f"<figcaption>{_inline(html.escape(caption))}</figcaption>" if caption else ""
    return f"<figure>{img}{cap}</figure>"


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def config_html(config: Any, summary: str = "configuration (JSON)", open_: bool = False) -> str:
    """Pretty-printed JSON in a collapsible ``<details>`` block (``config`` must be JSON-able)."""
    text = json.dumps(config, indent=2, ensure_ascii=False)
    attr = " open" if open_ else ""
    return (
        f'<details class="config"{attr}><summary>{html.escape(summary)}</summary>'
        f"<pre><code>{html.escape(text)}</code></pre></details>"
    )


def kv_table_html(items: Mapping[str, Any]) -> str:
    """A two-column key/value table (values JSON-encoded unless they are strings or numbers)."""
    rows = []
    for key, value in items.items():
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
        else:
            text = json.dumps(value, ensure_ascii=False)
        rows.append(
            f'<tr><th scope="row">{html.escape(str(key))}</th><td><code>{html.escape(text)}</code></td></tr>'
        )
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def render_page(
    title: str,
    sections: Sequence[PageSection],
    subtitle: str = "",
    data_note: str = "",
    meta_line: str = "",
    css: str | None = None,
    footer: str = "Made with inrecon. Self-contained page: works offline.",
) -> str:
    """The whole HTML document: header, table of contents, sections, inline CSS and the image-check script."""
    css = load_css() if css is None else css
    toc = "".join(
        f'<li><a href="#{html.escape(s.anchor)}">{html.escape(s.heading)}</a></li>' for s in sections
    )
    body = "\n".join(
        f'<section id="{html.escape(s.anchor)}" class="section {html.escape(s.kind)}">'
        f'<h2>{html.escape(s.heading)} <a class="anchor" href="#{html.escape(s.anchor)}" '
        f'aria-label="link to this section">#</a></h2>\n{s.body}\n'
        f'<p class="top"><a href="#top">↑ contents</a></p></section>'
        for s in sections
    )
    header = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        header.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')
    if data_note:
        header.append(f'<p class="data-note">{html.escape(data_note)}</p>')
    if meta_line:
        header.append(f'<p class="meta">{html.escape(meta_line)}</p>')
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{css}\n</style>\n</head>\n"
        '<body data-images-ok="pending" data-images-count="0">\n'
        f'<header id="top">{"".join(header)}</header>\n'
        f'<nav class="toc" aria-label="contents"><h2>Contents</h2><ol>{toc}</ol></nav>\n'
        f"<main>\n{body}\n</main>\n"
        f"<footer><p>{html.escape(footer)}</p></footer>\n"
        f"<script>\n{IMAGE_CHECK_SCRIPT}\n</script>\n</body>\n</html>\n"
    )
