"""The modules of `stcl.models` import each other without a cycle, counting imports inside functions.

A cycle there (cswin → encoder_base → loading → cswin, when `loading` dispatched on encoder classes) makes
the import order matter and hides which module owns what; each encoder family now maps its own files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stcl.models

MODELS = Path(stcl.models.__file__).parent


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Names of sibling modules of `stcl.models` that ``path`` imports anywhere (top level or in functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("stcl.models."):
                found.add(node.module.split(".")[2])
            elif node.module == "stcl.models":
                found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("stcl.models.")}
    return found & modules


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in MODELS.glob("*.py") if p.stem != "__init__"}
    return {m: _imports(MODELS / f"{m}.py", modules) - {m} for m in modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_models_has_no_import_cycle():
    graph = _graph()
    assert "loading" in graph and "encoders" in graph  # the walk found the package's modules
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_loading_imports_no_encoder_family():
    assert not _graph()["loading"] & {"encoders", "cswin", "encoder_base", "dino"}
