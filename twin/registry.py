"""The layer registry: every layer of the twin, by name. A layer is declared by a TOML file in
the ``layers`` package, or by an admin in a running twin (``twin layer add|change``, stored in
twin.layer_specs); the newest declaration of a layer is the one served.

A process learns what admins declared from its database (twin.store.layerspecs): at start, and
whenever PostgreSQL says a layer changed (the server's LISTEN). What is built from the layers
and kept (SQL texts, queryables, the pages' layer lists) is cleared with them: wrap it in
``@layer_cache``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import layers as layers_package
from twin.errors import NotFound
from twin.layer import Layer
from twin.layerspec import SpecError, layer_from_spec, read_spec_data

# Loaded first so that a feature's micro-grid and residential area can be derived on write.
AREA_LAYERS = ("subdistricts", "residential_areas", "micro_grids")

# The specs admins declared in the running twin (newest per layer), as this process last read
# them; they take the place of a file's spec of the same name.
_declared: dict[str, dict[str, Any]] = {}
_clear: list[Callable[[], None]] = []

Cached = TypeVar("Cached", bound=Callable[..., Any])


def layer_cache(func: Cached) -> Cached:
    """Mark a ``functools`` cache of something built from the layers: cleared when they
    change."""
    _clear.append(func.cache_clear)  # type: ignore[attr-defined]
    return func


@cache
def file_specs() -> dict[str, dict[str, Any]]:
    """Each ``layers/<name>.toml``, parsed, by name."""
    found: dict[str, dict[str, Any]] = {}
    for folder in layers_package.__path__:
        for path in sorted(Path(folder).glob("*.toml")):
            spec = read_spec_data(path)
            if spec.get("name") != path.stem:
                raise SpecError(f"layers/{path.name} must declare name = {path.stem!r}")
            found[path.stem] = spec
    return found


def spec_of(name: str) -> dict[str, Any]:
    """The spec the twin serves layer ``name`` by."""
    get_layer(name)
    return _declared.get(name) or file_specs()[name]


@cache
def all_layers() -> dict[str, Layer]:
    """Layers by name, area layers first, then the others alphabetically."""
    specs = {**file_specs(), **_declared}
    found = {name: layer_from_spec(spec, f"layers/{name}.toml" if name in file_specs()
                                   and name not in _declared else f"layer {name}")
             for name, spec in specs.items()}
    order = [n for n in AREA_LAYERS if n in found] + sorted(set(found) - set(AREA_LAYERS))
    return {name: found[name] for name in order}


def use_declared(specs: Mapping[str, dict[str, Any]]) -> bool:
    """Serve the layers admins declared (twin.store.layerspecs reads them); whether anything
    changed (then every ``@layer_cache`` is cleared)."""
    global _declared
    if dict(specs) == _declared:
        return False
    _declared = dict(specs)
    _cleared()
    return True


def reread_files() -> None:
    """Read ``layers/`` again (a file added while the process runs); what was built from the
    layers is cleared with them."""
    file_specs.cache_clear()
    _cleared()


def _cleared() -> None:
    all_layers.cache_clear()
    for clear in _clear:
        clear()


def get_layer(name: str) -> Layer:
    """The layer called ``name``; unknown names are a NotFound naming the known ones."""
    try:
        return all_layers()[name]
    except KeyError:
        raise NotFound(f"no layer {name!r}; layers: {', '.join(all_layers())}") from None
