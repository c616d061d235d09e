"""Import direction: data at the bottom (``workflow.spec``), then what derives from it (the families,
names, step counts, memory model, Slurm resources), then the config loader, then the stages. Each
check imports a module in a fresh interpreter and looks at what it loaded; the last one reads every
module's imports (at the top and inside functions: a lazy import still closes a circle) and refuses
any cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
from helpers import REPO

PACKAGE = REPO / "workflow"
HEAVY = ("torch", "numpy", "polars")


def loaded_by(module: str) -> set[str]:
    """The workflow modules and heavy packages (top-level names) that ``import module`` loads."""
    code = (
        f"import {module}, json, sys; "
        f"print(json.dumps(sorted(m for m in sys.modules if m == 'workflow' or m.startswith('workflow.') "
        f"or m in {HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout))


def under(modules: set[str], *names: str) -> set[str]:
    """The modules that are one of ``names`` or inside one of them."""
    return {m for m in modules if any(m == n or m.startswith(n + ".") for n in names)}


def test_spec_is_data_and_loads_no_other_workflow_module():
    assert loaded_by("workflow.spec") == {"workflow", "workflow.spec"}


def test_families_load_only_the_spec_and_themselves():
    loaded = loaded_by("workflow.families")
    assert loaded - under(loaded, "workflow.families") == {"workflow", "workflow.spec"}


def test_memory_model_loads_no_config_loader_plan_tune_or_torch():
    loaded = loaded_by("workflow.memory")
    assert not under(loaded, "workflow.config", "workflow.plan", "workflow.tune", "torch")


@pytest.mark.parametrize("module", ["workflow.names", "workflow.scaling", "workflow.steps", "workflow.slurm_resources"])
def test_derived_settings_load_no_config_loader_or_heavy_package(module):
    loaded = loaded_by(module)
    assert not under(loaded, "workflow.config", "workflow.plan", "workflow.tune", *HEAVY)


def test_config_loads_no_heavy_package_plan_or_tune():
    """The Snakefile imports workflow.config on every invocation, on login nodes too."""
    loaded = loaded_by("workflow.config")
    assert not under(loaded, *HEAVY, "workflow.plan", "workflow.tune")


def test_evaluate_loads_no_trainer_plan_tune_or_config():
    """Scoring a point needs the model, the shards and a device, not the machinery that trained it."""
    loaded = loaded_by("workflow.evaluate")
    assert not under(loaded, "workflow.plan", "workflow.tune", "workflow.config", "workflow.train.trainer")
    assert "workflow.train.parallel" in loaded  # where its device comes from: the test looks at the right thing


def test_train_parts_load_no_trainer_plan_or_tune():
    for part in ("workflow.train.checkpoint", "workflow.train.parallel", "workflow.train.kernels"):
        loaded = loaded_by(part)
        assert not under(loaded, "workflow.train.trainer", "workflow.plan", "workflow.tune", "workflow.config"), part


# --------------------------------------------------------------------------- the import graph


def module_files() -> dict[str, object]:
    """Module name -> file, for every module of the package. A module ``x.py`` beside a package
    ``x/`` is shadowed by the package (Python imports the package) and left out."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        if path.name != "__init__.py" and (path.with_suffix("") / "__init__.py").exists():
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports_of(name: str, path, modules: dict) -> set[str]:
    """The workflow modules ``name`` imports anywhere in its file (top level, functions, classes),
    but for imports only type checkers see. ``from P import x`` imports module ``P.x`` where there is
    one, else ``P`` itself."""
    is_package = path.name == "__init__.py"
    targets = set()

    def visit(node: ast.AST) -> None:
        if type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    found = set()
    for target in targets:
        # `import workflow.a.b` loads workflow.a.b; a name outside the package's modules is not ours.
        while target and target not in modules:
            target = target.rpartition(".")[0] if target.startswith("workflow.") else ""
        if target and target != name:
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) for each strongly connected component of more than one
    module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            connect(v)

    found = []
    for component in components:
        start = min(component)
        # Breadth first inside the component, from start back to start: a shortest cycle through it.
        paths = {w: [start, w] for w in graph[start] if w in component}
        frontier = list(paths)
        while start not in paths:
            next_frontier = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in component and w not in paths:
                        paths[w] = [*paths[v], w]
                        next_frontier.append(w)
            frontier = next_frontier
        found.append(paths[start])
    return found


def test_the_graph_sees_imports_at_the_top_and_inside_functions():
    graph = import_graph()
    assert "workflow.names" in graph["workflow.config"]  # at the top
    assert "workflow.files" in graph["workflow.config"]
    assert "workflow.spec" in graph["workflow.families.gpt"]
    assert {"workflow.families.gpt", "workflow.families.lstm"} <= graph["workflow.families"]
    assert graph["workflow.spec"] == set()
    # `from workflow import families` is the module workflow.families, not the package workflow.
    assert "workflow.families" in graph["workflow.model"]


def test_cycles_are_found_wherever_they_close():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_workflow_module_imports_itself_in_a_circle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in found)
