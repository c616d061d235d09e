"""The documentation: a short README, and every relative link in README.md and docs/ pointing at a file
and heading that exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200

# [text](target) or [text](target "title"); the text may not hold a closing bracket. Images too.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`]*`")
BACKTICKED_DOC = re.compile(r"`(docs/[^`\s]*\.md)`")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code removed: code is not a link."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, INLINE_CODE.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links reduced to their text, code to its content),
    lower case, punctuation other than hyphens, underscores and spaces dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link of a markdown file (not http, https or mailto)."""
    text = path.read_text(encoding="utf-8")
    # Lines are joined so that a link whose text wraps onto the next line is still found; a match's
    # line number comes from the newlines before it.
    lines = prose_lines(text)
    joined = "\n".join(line for _, line in lines)
    numbers = [number for number, _ in lines]
    found = []
    for match in LINK.finditer(joined):
        target = match.group(1)
        if re.match(r"^(https?:|mailto:)", target, re.IGNORECASE):
            continue
        found.append((numbers[joined.count("\n", 0, match.start())], target))
    return found


def broken(path: Path, target: str) -> str | None:
    """Why a relative link from ``path`` does not resolve, or None when it does."""
    file_part, _, anchor = target.partition("#")
    destination = (path.parent / file_part).resolve() if file_part else path
    if not destination.exists():
        return f"no file {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination}"
    if anchor:
        if destination.is_dir() or destination.suffix != ".md":
            return f"an anchor into {destination.name}, which is not a markdown file"
        if anchor not in anchors(destination):
            return f"no heading with anchor #{anchor} in {destination.relative_to(ROOT)}"
    return None


def test_readme_is_at_most_200_lines():
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= README_MAX_LINES, (
        f"README.md has {count} lines, more than {README_MAX_LINES}: move reference material to docs/"
    )


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_to_a_file_and_heading(path):
    problems = [
        f"{path.relative_to(ROOT)}:{line}: link ({target}): {why}"
        for line, target in links(path)
        if (why := broken(path, target)) is not None
    ]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_docs_paths_named_in_the_readme_exist():
    text = README.read_text(encoding="utf-8")
    named = sorted(set(BACKTICKED_DOC.findall(text)))
    missing = [name for name in named if not (ROOT / name).is_file()]
    assert not missing, f"README.md names documents that do not exist: {missing}"


def test_the_readme_points_to_every_document():
    targets = {target.partition("#")[0] for _, target in links(README)}
    documents = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")}
    unlinked = sorted(documents - targets)
    assert not unlinked, f"README.md does not link these documents: {unlinked}"


def test_a_broken_link_and_a_missing_anchor_are_named(tmp_path, monkeypatch):
    """The checks above can fail: a missing file and a missing heading are both reported."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    other = tmp_path / "other.md"
    other.write_text("# Other\n\n## The WSD schedule (`schedule.py`)\n\n## Notes\n\n## Notes\n", encoding="utf-8")
    page.write_text(
        "See [gone](gone.md), [here](other.md#nowhere), [ok](other.md#the-wsd-schedule-schedulepy),\n"
        "[second](other.md#notes-1), [self](#title), [web](https://example.org/x.md),\n"
        "and `[code](not-a-link.md)`.\n\n```\n[fenced](also-not.md)\n```\n\n# Title\n",
        encoding="utf-8",
    )
    found = {target: broken(page, target) for _, target in links(page)}
    assert set(found) == {
        "gone.md",
        "other.md#nowhere",
        "other.md#the-wsd-schedule-schedulepy",
        "other.md#notes-1",
        "#title",
    }
    assert found["gone.md"] == "no file gone.md"
    assert found["other.md#nowhere"] == "no heading with anchor #nowhere in other.md"
    assert found["other.md#the-wsd-schedule-schedulepy"] is None
    assert found["other.md#notes-1"] is None
    assert found["#title"] is None
