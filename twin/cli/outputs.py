"""`twin map` and `twin export`: the twin written to files, now or as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twin.cli.common import (
    AsOfOption,
    app,
    app_engine,
    domain_errors,
    load_settings,
    out,
)


@app.command("map")
def map_command(
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    as_of: AsOfOption = None,
) -> None:
    """Write a standalone Folium map of every layer (works offline), now or as it was."""
    from twin.maps.data import standalone_map
    from twin.times import parse_time

    settings = load_settings()
    with domain_errors():
        moment = parse_time("--as-of", as_of)
        engine = app_engine(settings)
        html = standalone_map(engine, settings, moment)
    out_file.write_text(html, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(html.encode()) / 1e6:.1f} MB)")


@app.command("export")
def export_command(
    layer: Annotated[str, typer.Argument(help="The layer, e.g. buildings.")],
    file: Annotated[Path, typer.Argument(help="A .gpkg, .geojson or .json file.")],
    as_of: AsOfOption = None,
) -> None:
    """Write one layer to a GeoPackage or GeoJSON file (EPSG:4326), now or as it was.

    The format follows FILE's suffix; the as-of time is kept in the file.

    A GeoPackage's layer is named LAYER; other layers in it are kept, so exports can share one.

    Examples:

        twin export buildings buildings.gpkg

        twin export streets streets.geojson --as-of 2026-06-30T18:00:00+08:00
    """
    from twin.features.export import export_layer, export_target

    settings = load_settings()
    with domain_errors():
        target = export_target(layer, file, as_of)
        done = export_layer(app_engine(settings), target)
    if done.before_history:
        began = (f"begins at {done.history_begins.isoformat()}" if done.history_begins
                 else "is empty")
        out.print(f"note: the twin's history {began}; the file holds the layer's columns and "
                  "no features")
    when = as_of if as_of else f"now ({done.as_of.isoformat()})"
    out.print(f"wrote {done.features} {layer} features to {file}, as of {when}")
