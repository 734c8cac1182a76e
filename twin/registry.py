"""The layer registry: every layer declared in the ``layers`` package (a TOML file each), by
name."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import layers as layers_package
from twin.errors import NotFound
from twin.layer import COMMON_FIELDS, Layer
from twin.layerspec import SpecError, read_spec

# Loaded first so that a feature's micro-grid and residential area can be derived on write.
AREA_LAYERS = ("residential_areas", "micro_grids")


@cache
def all_layers() -> dict[str, Layer]:
    """Layers by name, area layers first, then the others alphabetically: one TOML file each
    in ``layers/`` (twin.layerspec), named as the layer."""
    found: dict[str, Layer] = {}
    for folder in layers_package.__path__:
        for path in sorted(Path(folder).glob("*.toml")):
            layer = read_spec(path)
            if layer.name != path.stem:
                raise SpecError(f"layers/{path.name} must declare name = {path.stem!r}")
            clash = COMMON_FIELDS & set(layer.attributes.model_fields)
            if clash:
                raise SpecError(f"layers/{path.name}: attributes {sorted(clash)} are common "
                                "fields of every feature; choose other names")
            if layer.coverage_state is not None and layer.coverage_state not in \
                    layer.state_labels:
                raise SpecError(f"layers/{path.name}: coverage_state {layer.coverage_state!r} "
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
