"""The import structure: every module imports on its own, and the layers point one way.

A function-local import can hide a cycle between modules: the package works when its modules are
imported in the usual order and breaks with an ImportError ("partially initialized module") when a
tool or a test imports one of them first. So each module is imported alone here, with no project
module loaded before it, and the import graph (function-local imports included) must have no cycle.

The layers: ``codec`` (the codec, usable without any web code) must not import ``service`` or
``worker``; domain adapters (``codec.domains``) are used by encoders and decoders and must not
depend on the training package (``codec.training``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = tuple(p for p in ("codec", "service", "worker", "udic_jobs") if (ROOT / p / "__init__.py").is_file())

# One interpreter (torch imports once), each project module imported with every project module
# removed from sys.modules first: as if it were the first import of a fresh process.
_IMPORT_EACH = r"""
import importlib, json, sys, traceback, warnings
warnings.simplefilter("ignore")
packages = tuple(sys.argv[2].split(","))
def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in packages)
results = {}
for name in json.loads(sys.argv[1]):
    for m in loaded():
        del sys.modules[m]
    error = None
    try:
        importlib.import_module(name)
    except Exception as exc:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    results[name] = {"error": error, "loaded": loaded()}
print(json.dumps(results))
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


@dataclass(frozen=True)
class Imported:
    error: str | None  # the exception, when the import failed
    loaded: list[str]  # the project modules it loaded


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, Imported]:
    names = sorted(project_modules())
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, json.dumps(names), ",".join(PACKAGES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {name: Imported(**r) for name, r in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, at module level or inside functions (not for type checking
    only). ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out = set()
    for name in found:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports, without the implicit edge to its own parent packages
    (``codec.zoo.base`` importing ``codec.zoo`` is how Python loads a submodule, not a dependency)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = imports_of(path, modules) - parents - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_imports_alone(imported_alone: dict[str, Imported]) -> None:
    failures = {name: r.error for name, r in imported_alone.items() if r.error}
    assert not failures, json.dumps(failures, indent=1)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    detail = {" <-> ".join(c): {m: sorted(set(import_graph()[m]) & set(c)) for m in c} for c in found}
    assert not found, json.dumps(detail, indent=1)


def test_codec_imports_neither_service_nor_worker(imported_alone: dict[str, Imported]) -> None:
    forbidden = tuple(p for p in PACKAGES if p != "codec")
    graph = import_graph()
    direct = {
        m: sorted(d for d in deps if d.startswith(forbidden)) for m, deps in graph.items() if m.startswith("codec")
    }
    assert not {m: d for m, d in direct.items() if d}
    loaded = {
        name: [m for m in r.loaded if m.split(".")[0] in forbidden]
        for name, r in imported_alone.items()
        if name.split(".")[0] == "codec"
    }
    assert not {name: mods for name, mods in loaded.items() if mods}


@pytest.mark.parametrize("name", [n for n in sorted(project_modules()) if n.startswith("codec.domains")])
def test_domain_adapters_do_not_import_training(name: str, imported_alone: dict[str, Imported]) -> None:
    assert not {d for d in import_graph()[name] if d.startswith("codec.training")}
    assert not [m for m in imported_alone[name].loaded if m.startswith("codec.training")]


def test_the_graph_sees_function_local_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """The checks above are only as good as the parser: a hidden import must count, a typing one must not."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from codec.zoo.registry import Registry\n"
        "def f():\n    from codec.coder import encode\n    import codec.bitstream\n"
    )
    deps = imports_of(src, project_modules())
    assert {"codec.coder", "codec.bitstream"} <= deps
    assert "codec.zoo.registry" not in deps
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
