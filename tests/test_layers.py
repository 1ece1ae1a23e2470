"""The layers of docs/ARCHITECTURE.md, checked on the source: who may import whom.

Every module under ``src/tastypy`` is parsed (never imported) and each of its
imports resolved to the module it names. The rules:

- storage/ imports nothing of the layers above it (tracker, pod, cli, the
  top-level API): only itself and the shared bottom modules.
- outside storage/, a store is reached only through the engine-neutral
  modules of :data:`STORAGE_DOORS`, never through a file engine's parts.
- the packages import each other without a cycle; an import inside a
  function crosses packages only where :data:`DOCUMENTED_LAZY` says why.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import tastypy

SRC = Path(tastypy.__file__).parent
ARCHITECTURE = SRC.parent.parent / "docs" / "ARCHITECTURE.md"

# The bottom modules every layer may import, storage/ included.
SHARED = frozenset({"tastypy.errors", "tastypy._codec"})
# What the layers above storage/ may import of it (docs/ARCHITECTURE.md lists them).
STORAGE_DOORS = frozenset(
    {
        "tastypy.storage",
        "tastypy.storage.protocol",
        "tastypy.storage.engines",
        "tastypy.storage.memory",
        "tastypy.storage.damage",
        "tastypy.storage.files",
    }
)
# Imports inside a function that cross packages, and why (none may close a cycle).
DOCUMENTED_LAZY: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    lazy: bool  # inside a function: runs when called, not when the module loads
    line: int

    def __str__(self) -> str:
        kind = "lazy " if self.lazy else ""
        return f"{self.importer}:{self.line}: {kind}import of {self.imported}"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports() -> list[Import]:
    found: list[Import] = []
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        _collect(name, package, tree, found, lazy=False)
    return [each for each in found if each.imported.split(".")[0] == "tastypy"]


def _collect(name: str, package: str, node: ast.AST, into: list[Import], *, lazy: bool) -> None:
    for child in ast.iter_child_nodes(node):
        inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, ast.Import):
            into += [Import(name, alias.name, inner, child.lineno) for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in child.names:
                # "from . import _fs" imports a module; "from .x import f", module x.
                module = f"{base}.{alias.name}"
                into.append(
                    Import(name, module if module in MODULES else base, inner, child.lineno)
                )
        _collect(name, package, child, into, lazy=inner)


IMPORTS = _imports()


def group(module: str) -> str:
    """The package a module belongs to, as docs/ARCHITECTURE.md draws the layers."""
    parts = module.split(".")
    if module in SHARED:
        return "shared"
    if module in ("tastypy", "tastypy._verify_repair"):
        return "api"  # the public names, and verify/repair composed of engine and tracker
    if len(parts) > 1 and parts[1] in ("storage", "tracker", "cli"):
        return parts[1]
    if module == "tastypy.__main__":
        return "cli"
    return "pod"  # pod.py and the modules it is made of (_pending, _registry, ...)


def test_the_parser_sees_the_imports_it_must() -> None:
    # Guards the rules below against passing because nothing was found.
    pairs = {(i.importer, i.imported) for i in IMPORTS}
    assert ("tastypy.storage.engines", "tastypy.storage.protocol") in pairs
    assert ("tastypy.tracker._tracker", "tastypy.pod") in pairs
    assert ("tastypy.storage.files._engine", "tastypy.storage.files._fs") in pairs
    assert all(i.imported in MODULES for i in IMPORTS), [
        str(i) for i in IMPORTS if i.imported not in MODULES
    ]


def test_storage_imports_nothing_of_the_layers_above() -> None:
    wrong = [
        str(i)
        for i in IMPORTS
        if group(i.importer) == "storage"
        and group(i.imported) != "storage"
        and i.imported not in SHARED
    ]
    assert wrong == []


def test_shared_modules_import_no_layer() -> None:
    wrong = [
        str(i) for i in IMPORTS if group(i.importer) == "shared" and group(i.imported) != "shared"
    ]
    assert wrong == []


def test_outside_storage_a_store_is_reached_through_its_doors_only() -> None:
    wrong = [
        str(i)
        for i in IMPORTS
        if group(i.importer) != "storage"
        and group(i.imported) == "storage"
        and i.imported not in STORAGE_DOORS
    ]
    assert wrong == []


def test_the_doors_are_the_ones_the_architecture_names() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert all(f"`{door}`" in text for door in STORAGE_DOORS)
    assert all(module in MODULES for module in STORAGE_DOORS)


def test_lazy_imports_across_packages_are_documented() -> None:
    crossing = {
        (i.importer, i.imported)
        for i in IMPORTS
        if i.lazy and group(i.importer) != group(i.imported)
    }
    assert crossing == set(DOCUMENTED_LAZY)


def test_packages_import_each_other_without_a_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        a, b = group(i.importer), group(i.imported)
        if a != b and (not i.lazy or (i.importer, i.imported) not in DOCUMENTED_LAZY):
            edges.setdefault(a, set()).add(b)
    cycles = [
        f"{a} -> {b} -> ... -> {a}"
        for a, targets in sorted(edges.items())
        for b in sorted(targets)
        if a in _reachable(b, edges)
    ]
    witnesses = [
        str(i)
        for i in IMPORTS
        if group(i.importer) != group(i.imported)
        and group(i.importer) in _reachable(group(i.imported), edges)
    ]
    assert cycles == [], witnesses


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += sorted(edges.get(node, ()))
    return seen
