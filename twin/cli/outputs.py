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
    err,
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
    file: Annotated[Path, typer.Argument(help="A .gpkg, .geojson (.json), .fgb, .csv or "
                                         ".shp.zip (.zip) file.")],
    as_of: AsOfOption = None,
    datum: Annotated[str | None, typer.Option(help="gcj02 or bd09: coordinates for a Chinese "
                                              "web map (AMap/Tencent, Baidu) instead of "
                                              "WGS-84.")] = None,
) -> None:
    """Write one layer to a GeoPackage, GeoJSON, FlatGeobuf, CSV or zipped Shapefile file
    (EPSG:4326), now or as it was; the format follows FILE's suffix.

    GeoPackage, GeoJSON and FlatGeobuf keep the as-of time in the file.

    CSV: the geometry as WKT (points also as lon, lat), UTF-8 that Excel reads.

    Shapefile: one zip of its .shp .shx .dbf .prj .cpg; longer names cut to 10 bytes.

    A GeoPackage's layer is named LAYER; other layers in it are kept, so exports can share one.

    --datum gcj02|bd09: web-map coordinates, still labelled EPSG:4326; a datum column says so.

    Examples:

        twin export buildings buildings.gpkg

        twin export streets streets.geojson --as-of 2026-06-30T18:00:00+08:00

        twin export waste_points waste.csv --datum gcj02

        twin export buildings buildings.shp.zip
    """
    from twin.features.export import DATUM_NAMES, export_layer, export_target

    settings = load_settings()
    with domain_errors():
        target = export_target(layer, file, as_of, datum)
        done = export_layer(app_engine(settings), target)
    if done.before_history:
        began = (f"begins at {done.history_begins.isoformat()}" if done.history_begins
                 else "is empty")
        out.print(f"note: the twin's history {began}; the file holds the layer's columns and "
                  "no features")
    if done.renamed:
        names = ", ".join(f"{old} -> {new}" for old, new in done.renamed.items())
        out.print(f"note: Shapefile field names are at most 10 characters; renamed {names} "
                  "(Shapefile 字段名最多 10 个字符, 已改名)", markup=False)
    if done.clipped:
        err.print(f"warning: Shapefile text is at most 254 bytes; values of "
                  f"{', '.join(done.clipped)} were cut (Shapefile 文本最长 254 字节, 已截断)",
                  markup=False)
    if target.datum:
        name = DATUM_NAMES[target.datum]
        err.print(f"warning: the coordinates are {name}, not WGS-84, though the file says "
                  f"EPSG:4326 ({name} has no EPSG code); its datum column says {target.datum} "
                  f"(坐标为 {name} 偏移坐标, 不是 WGS-84)", markup=False)
    when = as_of if as_of else f"now ({done.as_of.isoformat()})"
    out.print(f"wrote {done.features} {layer} features to {file}, as of {when}")
