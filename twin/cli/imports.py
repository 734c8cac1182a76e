"""``twin import``: a subdistrict's own GIS files into its layers; ``twin imports``: what was
imported, and undoing one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import (
    app,
    app_engine,
    bars,
    domain_errors,
    err,
    load_settings,
    out,
    staff,
)

imports_app = typer.Typer(help="What was imported (导入记录), and undoing one import.",
                          no_args_is_help=True)
app.add_typer(imports_app, name="imports")


def _pairs(given: list[str], mapping: Path | None) -> tuple[dict[str, str], str | None]:
    """The mapping file's pairs and id, then each --map over them."""
    from twin.imports.rows import parse_pairs, read_mapping

    pairs, id_field = read_mapping(mapping) if mapping else ({}, None)
    return {**pairs, **parse_pairs(given)}, id_field


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="GeoPackage, Shapefile (or a .zip of one), "
                                         "GeoJSON, FlatGeobuf, CSV (a WKT column or lon/lat "
                                         "columns): anything GDAL reads.")],
    layer: Annotated[str | None, typer.Argument(help="The twin's layer to import into.")
                     ] = None,
    crs: Annotated[str | None, typer.Option(help="The file's coordinate system when it does "
                                            "not say, or says wrongly: EPSG:4490 (CGCS2000), "
                                            "EPSG:4549, EPSG:32651 ...")] = None,
    datum: Annotated[str | None, typer.Option(help="gcj02 or bd09: the data was traced off a "
                                              "Chinese web map (AMap/Tencent, Baidu) and is "
                                              "offset; converted to WGS-84.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="FILE_FIELD=ATTRIBUTE (or "
                                                  "name, tags, source_id); repeat it. Fields "
                                                  "named like an attribute go there "
                                                  "anyway.")] = None,
    mapping: Annotated[Path | None, typer.Option(help="A TOML file: id = \"FIELD\" and a "
                                                 "[fields] table of FILE_FIELD = "
                                                 "\"ATTRIBUTE\".")] = None,
    id_field: Annotated[str | None, typer.Option("--id", help="The file's field that "
                                                 "identifies a row (importing again updates "
                                                 "by it); default: the file's feature ids "
                                                 "(GeoPackage, FlatGeobuf).")] = None,
    file_layer: Annotated[str | None, typer.Option(help="Which layer of a file holding "
                                                   "several (a GeoPackage).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Do it all, write nothing, "
                                          "print the report.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Import the good rows of a file "
                                           "with bad ones (else nothing is imported).")
                        ] = False,
    sync: Annotated[bool, typer.Option("--sync", help="Delete the layer's features that are "
                                       "not in the file (made by hand too): the file is the "
                                       "whole layer.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")
                       ] = False,
    new_layer: Annotated[str | None, typer.Option(help="Import nothing: propose a layer NAME "
                                                  "for the file (NAME.toml) and the mapping "
                                                  "that imports it (NAME.mapping.toml), for "
                                                  "a person to confirm.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where --new-layer writes.")
                       ] = Path("."),
) -> None:
    """Import a GIS file into a layer, every row checked by the layer's rules and every change
    logged as one import (reason "import FILE by USER"), which `twin imports revert ID`
    undoes. Importing the same file again changes nothing; a changed row is one logged
    change."""
    from twin.imports.load import BadRows, ImportOptions, import_file

    if new_layer is not None:
        _propose(file, new_layer, file_layer, out_dir)
        return
    if layer is None:
        err.print("[bold red]error:[/] give the LAYER to import into (or --new-layer NAME)")
        raise typer.Exit(2)
    settings = load_settings()
    with domain_errors():
        pairs, mapped_id = _pairs(map_ or [], mapping)
        options = ImportOptions(crs=crs, datum=datum, pairs=pairs, id_field=id_field or mapped_id,
                                file_layer=file_layer, dry_run=dry_run, skip_bad=skip_bad,
                                sync=sync)
        try:
            with bars() as stage:
                report = import_file(app_engine(settings), staff(), file, layer, options,
                                     progress=lambda total: stage(f"{layer} 导入",
                                                                  total or 0))
        except BadRows as exc:
            _print_problems(exc.report.as_dict())
            raise
    shown = report.as_dict()
    if as_json:
        out.print_json(json.dumps(shown, ensure_ascii=False))
        return
    if report.problems:
        _print_problems(shown)
    if report.ignored_fields:
        err.print(f"fields not imported (not mapped): {', '.join(report.ignored_fields)}")
    verb = "would be" if dry_run else "were"
    out.print(f"import {report.import_id}: {report.read:,} rows read; {report.inserted:,} "
              f"new, {report.updated:,} changed, {report.unchanged:,} unchanged, "
              f"{report.deleted:,} deleted ({verb} written); {report.skipped:,} bad row(s) "
              "skipped" + ("" if report.written else " — dry run, nothing written"))


def _propose(file: Path, name: str, file_layer: str | None, out_dir: Path) -> None:
    from twin.imports.propose import propose

    with domain_errors():
        spec, mapping = propose(file, name, file_layer)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.toml").write_text(spec, encoding="utf-8")
    (out_dir / f"{name}.mapping.toml").write_text(mapping, encoding="utf-8")
    out.print(f"proposed layer {name}: {out_dir / (name + '.toml')} and "
              f"{out_dir / (name + '.mapping.toml')}\n"
              "read and complete the spec (titles, enums, states, style), copy it to layers/, "
              "run `twin db migrate` (and restart `twin serve`), then:\n"
              f"  twin import {file} {name} --mapping {out_dir / (name + '.mapping.toml')}")


def _print_problems(report: dict[str, Any]) -> None:
    table = Table("row 行", "field 字段", "value 值", "reason 原因", title="bad rows 错误行")
    for p in report["problems"][:50]:
        table.add_row(str(p["row"]), p["field"], str(p["value"])[:40],
                      f"{p['reason']} / {p['reason_zh']}")
    err.print(table)
    if report["problem_count"] > 50:
        err.print(f"... and {report['problem_count'] - 50:,} more (--json lists up to 1,000)")


@imports_app.command("list")
def list_imports(limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")
                                  ] = 20) -> None:
    """The imports, newest first: file, layer, who, when, what each did."""
    from twin.imports.load import list_imports

    settings = load_settings()
    with domain_errors(), app_engine(settings).connect() as conn:
        rows = list_imports(conn, limit)
    table = Table("id", "layer 图层", "file 文件", "by 操作人", "at 时间", "new", "changed",
                  "unchanged", "deleted", "skipped", title="导入记录 Imports")
    for r in rows:
        table.add_row(str(r["id"]), r["layer"], r["file"], r["actor"],
                      f"{r['started_at']:%Y-%m-%d %H:%M}",
                      *(f"{r[n]:,}" for n in ("inserted", "updated", "unchanged", "deleted",
                                              "skipped")))
    Console(width=max(out.width, 120)).print(table)


@imports_app.command("revert")
def revert_import_command(
    import_id: Annotated[int, typer.Argument(help="The import's id (twin imports list).")],
    reason: Annotated[str, typer.Option(help="Why, for the log.")] = "import reverted",
) -> None:
    """Undo every change of one import as one unit; refused (nothing changes) if a later edit
    touched what it would restore."""
    from twin.history.revert import revert_import

    settings = load_settings()
    with domain_errors():
        done = revert_import(app_engine(settings), staff(), import_id, reason)
    out.print(f"reverted import {import_id}: {len(done):,} change(s) undone")
