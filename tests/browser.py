"""A page loaded in a real headless browser (Debian's chromium), networking off.

The report page records its own rendering: each chart's container gets
``data-rendered`` once Vega has drawn it, and the body gets ``data-errors``
(every console.error, uncaught error and failed resource load) and
``data-report-status="done"`` when every chart has settled. Chromium's own
console log (stderr) is returned as well, so a test sees both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No network: every host resolves to nothing and every proxied request fails.
OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
]


def require_browser() -> str:
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise RuntimeError("REQUIRE_BROWSER=1 but chromium is not on PATH")
        pytest.skip("no chromium here")
    return CHROMIUM


@dataclass
class LoadedPage:
    dom: str
    console: list[str]
    elements: list[tuple[str, dict]]

    def with_attribute(self, name: str) -> list[dict]:
        return [attrs for _, attrs in self.elements if name in attrs]

    def body(self) -> dict:
        return next(attrs for tag, attrs in self.elements if tag == "body")


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def load(page: Path, budget_ms: int = 20_000, window: tuple[int, int] | None = None) -> LoadedPage:
    """The DOM after the page has run (virtual time), and the console lines; ``window``: the browser
    window's (width, height), for a page that measures what lies within it."""
    browser = require_browser()
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                browser,
                *OFFLINE_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *([f"--window-size={window[0]},{window[1]}"] if window else []),
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
    parser = _Elements()
    parser.feed(result.stdout)
    return LoadedPage(result.stdout, console, parser.elements)
