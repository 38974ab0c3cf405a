"""docs/architecture.md, Floors: the import graph of ``src/wskit`` has no cycle, and no module
imports another module's underscored names or reaches into another object's underscored
attributes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "wskit"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of what ``from ... import`` reads, inside wskit or not."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    if MODULES[module].name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import, TYPE_CHECKING ones included."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, node)
            names = [alias.name for alias in node.names]
            found.append((target, names))
            # ``from . import x`` imports the module x.
            for name in names:
                if f"{target}.{name}" in MODULES:
                    found.append((f"{target}.{name}", []))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets = {target for target, _ in imports(module) if target in MODULES}
        # A package's own submodules are not a cycle with it: ``wskit`` re-exports them.
        edges[module] = {t for t in targets if t != module}
    return edges


def test_the_modules_are_found() -> None:
    assert {"wskit", "wskit.websocket", "wskit.aio.protocol", "wskit.core.connection"} <= set(
        MODULES)


def test_no_import_cycle() -> None:
    edges = graph()
    # Importing a package runs its __init__, which may import its submodules: an edge from a
    # submodule to its own package (or an ancestor) is a cycle only if the package imports it.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_core_imports_nothing_above_it() -> None:
    for module in MODULES:
        if module.startswith("wskit.core"):
            for target, _ in imports(module):
                if target.startswith("wskit") and target in MODULES:
                    assert target.startswith("wskit.core"), f"{module} imports {target}"


def test_the_binding_never_imports_the_websocket() -> None:
    # docs/architecture.md, Seams: the binding hands events up through an interface.
    for target, _ in imports("wskit.aio.protocol"):
        assert target != "wskit.websocket"


def test_no_underscored_name_is_imported() -> None:
    offenders = []
    for module in MODULES:
        for target, names in imports(module):
            if not target.startswith("wskit"):
                continue
            offenders += [f"{module}: from {target} import {name}" for name in names
                          if name.startswith("_") and not name.startswith("__")]
    assert not offenders, offenders


def local_private_names(tree: ast.Module) -> set[str]:
    """Underscored members the module's own classes define: methods, ``self._x = ...``
    assignments and ``__slots__`` entries. A module is the unit of privacy: its classes may
    use each other's internals (a helper type and its owner)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    names.add(const.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return {name for name in names if name.startswith("_")}


def foreign_modules(tree: ast.Module) -> set[str]:
    """Names bound to modules outside wskit (``zlib._Compress`` is zlib's business)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names
                         if not alias.name.startswith("wskit"))
    return names


def underscored_attributes(module: str) -> list[str]:
    """``x._name`` where ``_name`` is not defined by this module: another module's internals."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    local = local_private_names(tree)
    foreign = foreign_modules(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in local:
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in foreign:
            continue
        # An object's own members, its base classes' included: a subclass may use them.
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    return sorted(found)


def test_no_module_uses_another_modules_underscored_attributes() -> None:
    offenders = [line for module in MODULES for line in underscored_attributes(module)]
    assert not offenders, "\n".join(offenders)
