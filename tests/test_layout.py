"""trainer/'s subpackages import one way (spec < backends < pipeline < insight < the front
doors) and no module imports itself back through others (docs/layout.md). Every import
counts, those inside functions too: read from the source with ast, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

TRAINER = Path(__file__).resolve().parent.parent / "trainer"
LAYERS = ["spec", "backends", "pipeline", "insight"]      # then the front doors: cli, builder


def module_imports() -> dict[str, set[str]]:
    """Every trainer module (dotted, from trainer/: "pipeline.sweep") -> the trainer modules
    it imports, anywhere in its source."""
    modules = {".".join(p.relative_to(TRAINER).with_suffix("").parts): p
               for p in TRAINER.rglob("*.py") if p.name != "__init__.py"}
    graph = {}
    for name, path in modules.items():
        package = name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            if node.level - 1 > len(package):
                continue                                    # ..kernels and the like
            base = package[:len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:                        # from . import x, or from .x import f
                for candidate in (".".join(target + [alias.name]), ".".join(target)):
                    if candidate in modules:
                        found.add(candidate)
                        break
        graph[name] = found - {name}
    return graph


def layer(module: str) -> int:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)


def test_every_module_sits_in_a_subpackage_or_is_a_front_door():
    graph = module_imports()
    loose = sorted(m for m in graph if "." not in m)
    assert loose == ["builder", "cli"], loose
    assert {m.split(".")[0] for m in graph if "." in m} == set(LAYERS)


def test_imports_go_one_way():
    graph = module_imports()
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if layer(b) > layer(a))
    assert upward == [], upward


def on_a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """The modules that reach themselves through the graph (each lies on a cycle)."""
    out = []
    for start in graph:
        seen, frontier = set(), list(graph[start])
        while frontier:
            m = frontier.pop()
            if m == start:
                out.append(start)
                break
            if m not in seen:
                seen.add(m)
                frontier.extend(graph[m])
    return sorted(out)


def test_no_module_imports_itself_back():
    assert on_a_cycle(module_imports()) == []


def test_the_checks_see_an_import_inside_a_function(tmp_path, monkeypatch):
    """An upward import inside a function, planted in a copy of trainer/, is caught, and so
    is the cycle it closes (pipeline.sweep imports spec.runs)."""
    import shutil
    import sys
    copy = tmp_path / "trainer"
    shutil.copytree(TRAINER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "spec" / "runs.py"
    path.write_text(path.read_text() + "\n\ndef _planted():\n    from ..pipeline import sweep\n")
    monkeypatch.setattr(sys.modules[__name__], "TRAINER", copy)
    graph = module_imports()
    assert "pipeline.sweep" in graph["spec.runs"] and layer("pipeline.sweep") > layer("spec.runs")
    assert "spec.runs" in on_a_cycle(graph) and "pipeline.sweep" in on_a_cycle(graph)
