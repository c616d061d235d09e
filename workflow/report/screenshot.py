"""The report's first screen as a PNG, as a reader sees it: ``python -m workflow.report.screenshot
results/report/index.html docs/report-first-screen.png``.

Headless Chromium (found on PATH) renders the page with the network off at 1400 x 900, after the
charts have drawn (virtual time). docs/ holds the default study's first screen, made this way.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from workflow.files import atomic_path

WINDOW = (1400, 900)
# No network: every host resolves to nothing and every proxied request fails; the page needs none.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--disable-background-networking"]


def browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(page: Path, out: Path, window: tuple[int, int] = WINDOW, budget_ms: int = 20_000) -> Path:
    """Render ``page`` in headless Chromium at ``window`` and write its first screen to ``out``."""
    found = browser()
    if found is None:
        raise RuntimeError("no chromium on PATH: install it (Debian: apt install chromium) to take the screenshot")
    if not page.is_file():
        raise RuntimeError(f"{page} does not exist: build the report first (snakemake, or python -m workflow.report)")
    with tempfile.TemporaryDirectory() as profile, atomic_path(out) as tmp:
        shot = Path(profile) / "first-screen.png"  # chromium names the format by the suffix
        result = subprocess.run(
            [
                found,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                *OFFLINE,
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={shot}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0 or not shot.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"chromium could not render {page}: {last}")
        shutil.copyfile(shot, tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.report.screenshot", description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path, help="the report's index.html")
    parser.add_argument("out", type=Path, help="where to write the PNG")
    parser.add_argument("--width", type=int, default=WINDOW[0], help="window width in pixels (default %(default)s)")
    parser.add_argument("--height", type=int, default=WINDOW[1], help="window height in pixels (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        screenshot(args.page, args.out, (args.width, args.height))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
