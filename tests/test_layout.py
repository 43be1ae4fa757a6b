"""The package layout keeps its shape: imports between `asr/` and `server/` modules form no circle, each
subpackage imports only from its own layer and those below it (docs/DESIGN.md's map), and no module grows past
MAX_LINES. Imports inside functions count too: a lazy import is a dependency all the same."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 450
# lower layers never import higher ones; a package may import its own layer and those below
LAYERS = {
    "asr.util": 0,
    "asr.audio": 1,
    "asr.model": 2,
    "asr.lm": 2,
    "asr.decode": 3,
    "asr.stream": 4,
    "asr.train": 4,
    "asr.apps": 5,
    "asr.compat": 5,
    "server": 6,
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*REPO.glob("asr/**/*.py"), *REPO.glob("server/**/*.py")]):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `name` imports (at the top or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:  # `from asr.apps import adapt` imports the module asr.apps.adapt
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(name: str) -> int | None:
    for prefix, rank in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return None  # asr/__init__.py: the public names, imported lazily by name


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circles():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    upward = [
        f"{a} ({layer(a)}) imports {b} ({layer(b)})"
        for a, targets in graph().items()
        for b in targets
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_every_module_has_a_layer():
    unplaced = [name for name in modules() if name not in ("asr", "server") and layer(name) is None]
    assert not unplaced, f"modules outside the layers of LAYERS (add their package there and to DESIGN.md): {unplaced}"


def test_no_module_over_the_line_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_the_checks_catch_what_they_are_for():
    """The circle finder and the layer rule on small made-up graphs, so a broken checker cannot pass silently."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert layer("asr.apps.cli") > layer("asr.stream.engine") > layer("asr.decode.beam") > layer("asr.audio.files")
