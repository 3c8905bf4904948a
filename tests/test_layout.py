"""The package's import graph: no cycles, and no import from a lower layer up to a higher one.

Every ``import`` / ``from ... import`` in ``module_ai`` counts, including the ones inside functions
(lazy imports are still dependencies) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "module_ai"

LAYERS: dict[str, int] = {
    "errors": 0, "_redact": 0, "_lazy": 0,
    "config": 1, "_config_read": 1, "_env": 1, "prompts": 1,
    "controls": 2,
    "backends": 3,
    "rerank": 4, "retrieval": 4,
    "registry": 5,
    "chains": 6,
    "graphs": 7,
    "commands": 8, "cli": 8,
    "__main__": 9, "__init__": 9,
}
"""Top-level part of the package -> layer; a module may import only its own layer or lower ones."""

SEPARATE = [("retrieval.milvus", "retrieval.embedded"), ("retrieval.embedded", "retrieval.milvus"),
            ("rerank", "retrieval"), ("retrieval", "rerank")]
"""Pairs of (importer prefix, forbidden prefix) within one layer: siblings that must stay apart."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """``module -> {module_ai modules it imports}`` (``from pkg import sub`` resolves to ``pkg.sub``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        resolved = {_resolve(t, modules) for t in targets if t.startswith("module_ai")}
        graph[name] = {t for t in resolved if t and t != name}
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_top_level_part_has_a_layer():
    parts = {_part(m) for m in _modules()}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS: {sorted(parts - set(LAYERS))}"


def test_the_import_graph_has_no_cycles():
    assert _cycles(import_graph()) == []


def test_no_import_runs_from_a_lower_layer_up():
    upward = sorted(f"{src} -> {dst}" for src, dsts in import_graph().items() for dst in dsts
                    if LAYERS[_part(dst)] > LAYERS[_part(src)])
    assert upward == []


@pytest.mark.parametrize(("importer", "forbidden"), SEPARATE)
def test_sibling_parts_stay_apart(importer, forbidden):
    crossing = sorted(f"{src} -> {dst}" for src, dsts in import_graph().items() for dst in dsts
                      if src.startswith(f"module_ai.{importer}") and dst.startswith(f"module_ai.{forbidden}"))
    assert crossing == []


def test_the_checker_sees_cycles_and_upward_imports():
    """The checks above are only worth something if they catch a planted cycle and an upward import."""
    graph = {"module_ai.backends.x": {"module_ai.chains.y"}, "module_ai.chains.y": {"module_ai.backends.x"}}
    assert _cycles(graph) == [["module_ai.backends.x", "module_ai.chains.y", "module_ai.backends.x"]]
    assert LAYERS[_part("module_ai.chains.y")] > LAYERS[_part("module_ai.backends.x")]


def test_no_module_sprawls():
    long = sorted(f"{_module_name(p)}: {n}" for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > 340)
    assert long == []


def test_public_functions_say_what_they_return():
    missing = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes = [(tree.body, "")] + [(n.body, f"{n.name}.") for n in tree.body
                                      if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
        missing += [f"{_module_name(path)}.{prefix}{fn.name}" for body, prefix in scopes for fn in body
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and not fn.name.startswith("_") and fn.returns is None]
    assert sorted(missing) == []
