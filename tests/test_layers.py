"""The layer rules, read with `ast` from the imports the code itself writes.

- exchange_sync imports only downwards: models, then graph, sync, services, and last the interfaces
  (admin, tasks, management commands, forms);
- the product (exchange_sync, contacts, health, bcsync_site) imports neither the harness nor the
  emulator; the contact master knows nothing of exchange_sync, graph/ and the health endpoint no other
  bcsync code, the settings no app, and the emulator neither Django nor bcsync;
- no import cycle inside the product, counting the imports that run when a module is loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("exchange_sync", "contacts", "health", "bcsync_site")
# Within exchange_sync, a module may import modules of its own rank or lower.
RANKS = {
    "exchange_sync.models": 0,
    "exchange_sync.graph": 1,
    "exchange_sync.sync": 2,
    "exchange_sync.services": 3,
    "exchange_sync.admin": 4,
    "exchange_sync.tasks": 4,
    "exchange_sync.management": 4,
    "exchange_sync.forms": 4,
    "exchange_sync.views": 4,
    "exchange_sync.urls": 4,
}
UNLAYERED = ("exchange_sync.apps", "exchange_sync.migrations")
BCSYNC = ("bcsync_site", "contacts", "exchange_sync", "health", "harness")
# What each package must not import (its own modules aside).
FORBIDDEN = {
    "bcsync_site": (*BCSYNC, "m365_emulator"),
    "contacts": ("exchange_sync", "harness", "m365_emulator"),
    "exchange_sync": ("harness", "m365_emulator"),
    "exchange_sync.graph": (*BCSYNC, "m365_emulator"),
    "health": (*BCSYNC, "m365_emulator"),
    "m365_emulator": ("django", *BCSYNC),
}


def modules(package: str) -> dict[str, Path]:
    folder = ROOT / package.replace(".", "/")
    assert folder.is_dir(), package
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


KNOWN_MODULES = {name for package in (*PRODUCT, "harness", "m365_emulator") for name in modules(package)}


def imports(name: str, path: Path, *, when_loaded: bool) -> set[str]:
    """The modules `name` imports; with `when_loaded`, only those imported while it is loaded (not
    inside functions, nor under `if TYPE_CHECKING:`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if when_loaded and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return
        if when_loaded and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            submodules = {f"{module}.{alias.name}" for alias in node.names} & KNOWN_MODULES
            found.update(submodules)
            if len(submodules) < len(node.names):  # some names come from the module itself
                found.add(module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def in_package(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def rank(name: str) -> int | None:
    return next((value for prefix, value in RANKS.items() if in_package(name, (prefix,))), None)


def test_every_module_of_exchange_sync_has_a_layer():
    unplaced = [
        name
        for name in modules("exchange_sync")
        if rank(name) is None and name != "exchange_sync" and not in_package(name, UNLAYERED)
    ]
    assert unplaced == []


def test_exchange_sync_imports_only_downwards():
    upward = [
        f"{name} imports {imported}"
        for name, path in modules("exchange_sync").items()
        if rank(name) is not None
        for imported in imports(name, path, when_loaded=False)
        if (rank(imported) or 0) > rank(name)
    ]
    assert upward == []


def test_no_package_imports_what_it_must_not_know():
    found = [
        f"{name} imports {imported}"
        for package, forbidden in FORBIDDEN.items()
        for name, path in modules(package).items()
        for imported in imports(name, path, when_loaded=False)
        if in_package(imported, forbidden) and not in_package(imported, (package,))
    ]
    assert found == []


def test_no_import_cycle_inside_the_product():
    product = {name: path for package in PRODUCT for name, path in modules(package).items()}
    graph = {
        name: sorted(set(imports(name, path, when_loaded=True)) & product.keys() - {name})
        for name, path in product.items()
    }
    done: set[str] = set()

    def cycle_from(name: str, trail: list[str]) -> list[str] | None:
        if name in trail:
            return [*trail[trail.index(name) :], name]
        if name in done:
            return None
        for imported in graph[name]:
            if found := cycle_from(imported, [*trail, name]):
                return found
        done.add(name)
        return None

    cycles = {tuple(found) for name in sorted(graph) if (found := cycle_from(name, []))}
    assert sorted(cycles) == []
