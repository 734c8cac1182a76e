"""The layer registry: every ``LAYER`` declared in the ``layers`` package, by name."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import layers as layers_package
from twin.errors import NotFound
from twin.layer import COMMON_FIELDS, Layer

# Loaded first so that a feature's micro-grid and residential area can be derived on write.
AREA_LAYERS = ("residential_areas", "micro_grids")


@cache
def all_layers() -> dict[str, Layer]:
    """Layers by name, area layers first, then the others alphabetically."""
    found: dict[str, Layer] = {}
    for module in pkgutil.iter_modules(layers_package.__path__):
        if module.name.startswith("_"):
            continue
        layer = importlib.import_module(f"layers.{module.name}").LAYER
        if not isinstance(layer, Layer) or layer.name != module.name:
            raise TypeError(f"layers/{module.name}.py must define LAYER named {module.name!r}")
        clash = COMMON_FIELDS & set(layer.attributes.model_fields)
        if clash:
            raise TypeError(f"layers/{module.name}.py: attributes {sorted(clash)} are common "
                            "fields of every feature; choose other names")
        if layer.coverage_state is not None and layer.coverage_state not in layer.state_labels:
            raise TypeError(f"layers/{module.name}.py: coverage_state {layer.coverage_state!r} "
                            f"is not one of its states {list(layer.state_labels)}")
        found[layer.name] = layer
    order = [n for n in AREA_LAYERS if n in found] + sorted(set(found) - set(AREA_LAYERS))
    return {name: found[name] for name in order}


def get_layer(name: str) -> Layer:
    """The layer called ``name``; unknown names are a NotFound naming the known ones."""
    try:
        return all_layers()[name]
    except KeyError:
        raise NotFound(f"no layer {name!r}; layers: {', '.join(all_layers())}") from None
