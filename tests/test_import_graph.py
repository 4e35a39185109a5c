"""The import graph of all of `src/stcl` follows the layers of ARCHITECTURE.md and has no cycle.

Every import counts: top level, inside functions, under ``if TYPE_CHECKING``. A module may import modules of
its own layer and of lower ones; no module imports itself back through others (a cycle makes the import order
matter and hides which module owns what: once ``cswin → encoder_base → loading → cswin``, when ``loading``
dispatched on encoder classes; once ``flow.cache → metrics.tc → flow.store``, when TC owned the warp that the
flow stage stores). The table is read from ARCHITECTURE.md's "Layers" section, the one place it is written.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import stcl

SRC = Path(stcl.__file__).parent  # src/stcl
ARCHITECTURE = Path(__file__).parents[1] / "ARCHITECTURE.md"


def _modules() -> dict[str, Path]:
    """Dotted name → file of every module of the package (a package's ``__init__`` under the package name)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The stcl modules that module ``name`` imports anywhere in its file (``from P import m`` counts m)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import stcl.data.vspw.x`-style: the longest module prefix
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return found - {name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layers(text: str) -> list[tuple[str, list[str]]]:
    """(layer, entries) rows of the "Layers" table, lowest first; an entry is `mod` or `pkg/`, notes in (...)."""
    section = re.search(r"^## Layers\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, f"{ARCHITECTURE}: no '## Layers' section"
    rows = []
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 2 and "`" in cells[1]:
            rows.append((cells[0], re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cells[1]))))  # (notes) skipped
    assert rows, f"{ARCHITECTURE}: the Layers section holds no table rows"
    return rows


def _layer_of(rows: list[tuple[str, list[str]]], modules: list[str]) -> dict[str, int]:
    """Module → index of its layer (0 = lowest). Fails naming any module in no layer or in two."""
    level: dict[str, int] = {}
    for i, (_, entries) in enumerate(rows):
        for entry in entries:
            if entry.endswith("/"):
                prefix = "stcl." + entry.rstrip("/").replace("/", ".")
                members = [m for m in modules if m == prefix or m.startswith(prefix + ".")]
            else:
                members = [m for m in modules if m == ("stcl" if entry == "stcl" else f"stcl.{entry}")]
            assert members, f"{ARCHITECTURE}: Layers entry `{entry}` names no module of src/stcl"
            for m in members:
                assert m not in level, f"{m} is in two layers of {ARCHITECTURE.name}"
                level[m] = i
    unplaced = sorted(set(modules) - set(level))
    assert not unplaced, f"modules in no layer of {ARCHITECTURE.name}'s Layers table: {unplaced}"
    return level


def _violations(graph: dict[str, set[str]], level: dict[str, int], rows) -> list[str]:
    return [
        f"{m} ({rows[level[m]][0]}) imports {t} ({rows[level[t]][0]}), a higher layer"
        for m in sorted(graph)
        for t in sorted(graph[m])
        if level[t] > level[m]
    ]


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


def test_every_import_goes_to_the_same_or_a_lower_layer():
    graph = _graph()
    assert {"stcl.models.loading", "stcl.metrics.tc", "stcl.flow.cache", "stcl.cli"} <= set(graph)  # walk found them
    assert "stcl.data.vspw" in graph["stcl.flow.cache"]  # imported only inside compute_flows: it counts
    rows = _layers(ARCHITECTURE.read_text(encoding="utf-8"))
    level = _layer_of(rows, list(graph))
    bad = _violations(graph, level, rows)
    assert not bad, "\n".join(bad)


def test_no_module_import_cycle():
    graph = _graph()
    cycle = _cycle(graph)
    assert cycle is None, " → ".join(cycle)


def test_checks_find_what_they_look_for(tmp_path):
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    rows = _layers("# x\n## Layers\n\n| layer | modules |\n|---|---|\n| base | `atomic` |\n| data | `data/` (notes, `x`) |\n## Next\n")
    assert rows == [("base", ["atomic"]), ("data", ["data/"])]
    level = _layer_of(rows, ["stcl.atomic", "stcl.data", "stcl.data.io"])
    graph = {"stcl.atomic": {"stcl.data.io"}, "stcl.data": set(), "stcl.data.io": {"stcl.atomic"}}
    assert _violations(graph, level, rows) == ["stcl.atomic (base) imports stcl.data.io (data), a higher layer"]
    with pytest.raises(AssertionError, match=r"in no layer .*\['stcl\.extra'\]"):
        _layer_of(rows, ["stcl.atomic", "stcl.data", "stcl.extra"])
    pkg = tmp_path / "mod.py"
    pkg.write_text("def f():\n    from stcl.data import io, nothing\n    import stcl.atomic\nfrom . import data\n")
    modules = {"stcl.mod": pkg, "stcl.data": pkg, "stcl.data.io": pkg, "stcl.atomic": pkg}
    assert _imports("stcl.mod", pkg, modules) == {"stcl.data", "stcl.data.io", "stcl.atomic"}


def test_loading_imports_no_encoder_family():
    family = {f"stcl.models.{m}" for m in ("encoders", "cswin", "encoder_base", "dino", "swin", "resnet")}
    assert not _graph()["stcl.models.loading"] & family
