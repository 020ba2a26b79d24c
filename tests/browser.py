"""Headless-browser checks for generated HTML: Debian's Chromium, run once per check as a subprocess.

``dump_dom`` loads a page and returns the DOM after scripts ran (``--virtual-time-budget`` lets the ``load``
handlers finish); ``screenshot`` writes a PNG of the viewport. Chromium prints every console message of the
page to stderr as ``[...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)``, whatever the message's
level (``console.error`` also reads ``INFO``), so :func:`console_messages` returns all of them and a page meant
to be silent must produce none; :func:`console_errors` keeps the uncaught exceptions and error-level lines.

Set ``INRECON_CHROMIUM`` to use another binary; tests skip when none is found (:func:`chromium_or_skip`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

DEFAULT_CHROMIUM = "/usr/bin/chromium"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
)

_CONSOLE = re.compile(r"^\[[^\]]*:(?P<level>[A-Z]+):CONSOLE[^\]]*\]\s*(?P<message>.*)$")


def find_chromium() -> str | None:
    """Path of the Chromium binary: ``$INRECON_CHROMIUM``, ``/usr/bin/chromium``, or ``chromium`` on PATH."""
    for candidate in (os.environ.get("INRECON_CHROMIUM"), DEFAULT_CHROMIUM, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def chromium_or_skip() -> str:
    """The Chromium path, or skip the calling test saying how to get one."""
    import pytest

    path = find_chromium()
    if path is None:
        pytest.skip(
            f"headless Chromium not found at {DEFAULT_CHROMIUM} (install: apt-get install -y chromium, "
            "or set INRECON_CHROMIUM)"
        )
    return path


@dataclass
class BrowserRun:
    """Output of one Chromium run."""

    returncode: int
    stdout: str
    stderr: str


def run_chromium(page: Path, tmp_dir: Path, *extra: str, timeout: float = 90.0) -> BrowserRun:
    """Run headless Chromium on the local file ``page`` with a fresh profile under ``tmp_dir``."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found; see chromium_or_skip()")
    profile = Path(tmp_dir) / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, Path(page).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return BrowserRun(proc.returncode, proc.stdout, proc.stderr)


def dump_dom(page: Path, tmp_dir: Path) -> BrowserRun:
    """Load ``page`` and return the serialised DOM (in ``stdout``) after the page's scripts ran."""
    return run_chromium(page, tmp_dir, "--dump-dom")


def screenshot(page: Path, out_png: Path, tmp_dir: Path, size: tuple[int, int] = (1280, 2000)) -> BrowserRun:
    """Write a ``size`` (width, height) screenshot of ``page`` to ``out_png``."""
    return run_chromium(
        page, tmp_dir, "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--screenshot={out_png}"
    )


def console_messages(stderr: str) -> list[str]:
    """Every console line the page produced (any level), as logged by ``--enable-logging=stderr``."""
    return [line.strip() for line in stderr.splitlines() if _CONSOLE.match(line.strip())]


def console_errors(stderr: str) -> list[str]:
    """Console lines that are errors: uncaught exceptions, or logged at ERROR level."""
    out = []
    for line in console_messages(stderr):
        m = _CONSOLE.match(line)
        if m and (m["level"] in ("ERROR", "FATAL") or "Uncaught" in m["message"]):
            out.append(line)
    return out


class _BodyAttrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self.attrs is None:
            self.attrs = {k: v or "" for k, v in attrs}


def body_attributes(dom: str) -> dict[str, str]:
    """Attributes of the ``<body>`` element of a dumped DOM (empty if there is none)."""
    parser = _BodyAttrs()
    parser.feed(dom)
    return parser.attrs or {}


def image_stats(png: Path) -> dict[str, float]:
    """Pixel statistics of a PNG: ``std`` (over all channels, 0-1 scale) and ``non_white`` (fraction)."""
    from matplotlib.image import imread

    pixels = np.asarray(imread(png), dtype=np.float64)[..., :3]
    non_white = float(np.mean(np.any(pixels < 0.97, axis=-1)))
    return {
        "std": float(pixels.std()),
        "non_white": non_white,
        "height": pixels.shape[0],
        "width": pixels.shape[1],
    }
