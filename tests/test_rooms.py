"""The house's rule, checked: each room of twin/ imports only the rooms below it (as its
package docstring says), the domain never imports FastAPI, and only `twin serve` reaches
into api/."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

ROOT_MODULES = {"settings", "errors", "times", "crs", "datum", "layer", "layerspec", "registry",
                "users"}
# room -> the rooms it may import (the root modules always)
BELOW = {
    "store": set(),
    "features": {"store"},
    "history": {"store", "features"},
    "field": {"store", "features", "history"},
    "analysis": {"store", "features"},
    "cases": {"store", "features"},
    "hotline": {"store", "features", "cases"},
    "imports": {"store", "features"},
    "maps": {"store", "features", "field", "cases", "hotline"},
    "sample": {"store", "cases", "hotline"},
    "cli": {"store", "features", "history", "field", "analysis", "maps", "sample", "cases",
            "hotline", "imports"},
}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) of every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, inner))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "twin" or len(parts) == 1:
        return None
    return "root" if parts[1] in ROOT_MODULES else parts[1]


def test_imports_run_only_downward() -> None:
    wrong = []
    for path in sorted((ROOT / "twin").rglob("*.py")):
        relative = path.relative_to(ROOT / "twin")
        room = "root" if len(relative.parts) == 1 else relative.parts[0]
        if room == "static":
            continue
        for module, in_function in _imports(path):
            top = module.split(".")[0]
            web = top in ("fastapi", "starlette", "uvicorn") and not (room == "cli" and in_function)
            upward = top == "api" and not (relative.as_posix() == "cli/serve.py" and in_function)
            if web or upward:
                wrong.append(f"{relative}: imports {module}")
            target = _room(module)
            if target is None or target in ("root", room):
                continue
            if room == "root" or target not in BELOW.get(room, set()):
                wrong.append(f"{relative}: {room} imports {module} ({target})")
    assert wrong == []


def test_every_room_is_known_and_says_what_it_may_import() -> None:
    rooms = {p.parent.name for p in (ROOT / "twin").glob("*/__init__.py")}
    assert rooms == set(BELOW)
    for room in BELOW:
        docstring = ast.get_docstring(ast.parse(
            (ROOT / "twin" / room / "__init__.py").read_text(encoding="utf-8"))) or ""
        if room != "cli":
            assert "May import" in docstring, room
