"""The architecture holds, checked from the code itself (issue 10).

No import cycles (imports inside functions count), ``workflow.py`` only orchestrates in at
most 350 lines, no function is over 60 lines, no private name crosses modules, no grab-bag
module, one atomic writer, one table of metric directions, the input kind decided in one
place, and the README's module map lists exactly the modules there are.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "dlw"


def module_name(path: Path) -> str:
    parts = ("dlw", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def imported_modules(name: str) -> set[str]:
    """Every dlw module ``name`` imports, at the top or inside a function."""
    found = set()
    package = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "dlw"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "dlw":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def test_no_import_cycles():
    graph = {name: imported_modules(name) for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_checker_sees_a_cycle_made_inside_a_function():
    """The cycle check is not vacuous: an import inside a function is an edge too."""
    tree = ast.parse("def f():\n    from dlw.workflow import load\n")
    TREES["dlw.errors"], saved = tree, TREES["dlw.errors"]
    try:
        assert "dlw.workflow" in imported_modules("dlw.errors")
    finally:
        TREES["dlw.errors"] = saved


def test_workflow_only_orchestrates_in_at_most_350_lines():
    lines = MODULES["dlw.workflow"].read_text(encoding="utf-8").count("\n")
    assert lines <= 350, f"workflow.py has {lines} lines"


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


def test_no_private_name_is_imported_across_modules():
    crossing = [
        f"{name} imports {node.module}.{alias.name}"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlw")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert crossing == []


def test_no_grab_bag_module():
    assert not [p for p in MODULES.values() if p.stem in ("utils", "helpers", "util", "misc", "common")]


def source_outside(*allowed: str) -> dict[str, str]:
    return {name: MODULES[name].read_text(encoding="utf-8") for name in MODULES if name not in allowed}


def test_one_atomic_writer():
    """Renames into place happen in runs.py only (the run folder and ``write_atomic``)."""
    offenders = [name for name, text in source_outside("dlw.runs").items() if re.search(r"os\.(replace|rename)\(|\w\.(replace|rename)\(\s*\w+\s*\)\s*$", text, re.M)]
    assert offenders == []


def test_one_table_of_metric_directions():
    """Which way a metric improves is read from dlw.objectives, never decided from its name elsewhere."""
    pattern = re.compile(r"""(higher|lower|better|maximi[sz]e)\w*\s*=[^\n]*[!=]= ["']\w+["']|HIGHER_IS_BETTER\s*=|LOWER_IS_BETTER\w*\s*=""")
    offenders = [name for name, text in source_outside("dlw.objectives").items() if pattern.search(text)]
    assert offenders == []


def test_the_input_kind_is_decided_in_one_place():
    """No 'is this an image run?' helper outside the seam: the old six deciders are gone."""
    pattern = re.compile(r"\bis_images\b|\bis_image_schema\b|\bconfig\.images\b|\bspec\.images\b")
    users = [name for name, text in source_outside().items() for line in text.splitlines() if pattern.search(line)]
    # Run.is_images stays in the public API, as one property that reads the recorded kind.
    assert users == ["dlw.workflow"] and MODULES["dlw.workflow"].read_text().count("is_images") == 1
    # Input containers are told apart only by the image kind's own module.
    containers = re.compile(r"isinstance\([^)]*np\.ndarray")
    allowed = ("dlw.data.image_sets", "dlw.data.images", "dlw.data.image_stream", "dlw.explain")
    assert [name for name, text in source_outside(*allowed).items() if containers.search(text)] == []


def test_config_module_holds_only_the_pydantic_models():
    tree = TREES["dlw.config"]
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    assert functions == [], f"config.py defines functions {functions}; they belong in spec.py"


def test_the_readme_maps_every_module_and_only_those():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("<!-- architecture:start -->"): text.index("<!-- architecture:end -->")]
    listed = re.findall(r"^\| `([^`]+\.py)` \|", block, re.M)
    actual = sorted(str(p.relative_to(PACKAGE)) for p in MODULES.values())
    assert sorted(listed) == actual
    assert len(listed) == len(set(listed)), "a module is listed twice"
