"""Size limits that keep each idea on a few screens: no module of the package over 600 lines, no class
over 400 (the trainer composes its parts instead of holding them)."""

from __future__ import annotations

import ast

from helpers import REPO

MODULE_LINES = 600
CLASS_LINES = 400


def sources():
    return sorted(p for p in (REPO / "workflow").rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_over_600_lines():
    long = {str(p.relative_to(REPO)): n for p in sources() if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert not long, f"modules over {MODULE_LINES} lines: {long}"


def test_no_class_over_400_lines():
    classes = {
        f"{p.relative_to(REPO)}:{node.name}": node.end_lineno - node.lineno + 1
        for p in sources()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    assert classes, "no class found: the test looks in the wrong place"
    long = {name: n for name, n in classes.items() if n > CLASS_LINES}
    assert not long, f"classes over {CLASS_LINES} lines: {long}"
