"""The package's layout rules, checked from the source: no import cycles, small modules.

A cycle between modules makes the order of imports matter and hides which module owns a
fact; a module past a few hundred lines usually holds two concerns. Both are read from the
source with `ast`, so the test runs in milliseconds and needs no hardware.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "appliance"
MAX_LINES = 500
# A module may be longer when its docstring says why, with this phrase.
LONG_REASON = "Longer than usual because"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes that run only for type checkers (`if TYPE_CHECKING:`)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skipped


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Modules of ours this module imports, at the top or inside a function.

    A lazy import inside a function still ties the two modules together, so it counts;
    imports made only for type checkers do not.
    """
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    found: set[str] = set()
    here = module_name(path)
    is_package = path.name == "__init__.py"
    for sub in ast.walk(tree):
        if id(sub) in skipped:
            continue
        if isinstance(sub, ast.Import):
            found.update(alias.name for alias in sub.names if alias.name in known)
        elif isinstance(sub, ast.ImportFrom):
            base = sub.module or ""
            if sub.level:
                anchor = here.split(".") if is_package else here.split(".")[:-1]
                anchor = anchor[: len(anchor) - (sub.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in sub.names:
                candidate = f"{base}.{alias.name}"
                if candidate in known:
                    found.add(candidate)
                elif base in known:
                    found.add(base)
    found.discard(here)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node):] + [node]
        if node in done:
            return None
        visiting.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_between_our_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_long_without_a_stated_reason() -> None:
    long = []
    for name, path in sorted(modules().items()):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if LONG_REASON not in doc:
                long.append(f"{name} ({lines} lines)")
    assert not long, f"over {MAX_LINES} lines with no '{LONG_REASON} ...' in the docstring: " + ", ".join(long)
