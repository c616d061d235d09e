"""Writing a chart: self-contained HTML, SVG and PNG, and its RST caption (the single-study report and
the comparison page of a study with arms both save their charts this way)."""

from __future__ import annotations

from pathlib import Path

from workflow.files import atomic_path, write_text_atomic
from workflow.report import FORMATS


def caption_rst(title: str, text: str) -> str:
    return f"{title}. {text}\n"


def save_chart(chart, caption: str, title: str, stem: Path) -> list[Path]:
    """One chart as self-contained HTML, SVG and PNG (``stem`` + each suffix), and its RST caption in
    ``captions/`` beside them."""
    written = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            if fmt == "html":
                chart.save(str(tmp), format="html", inline=True)
            elif fmt == "png":
                chart.save(str(tmp), format="png", scale_factor=2)
            else:
                chart.save(str(tmp), format="svg")
        written.append(path)
    path = stem.parent / "captions" / f"{stem.name}.rst"
    write_text_atomic(path, caption_rst(title, caption))
    return [*written, path]
