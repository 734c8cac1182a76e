"""An import: a file's rows written into a layer as one logged unit.

Inside one transaction: a row in ``twin.imports``; the file streamed in batches, each batch
checked (twin.imports.rows) and COPYed into a staging table, then one UPDATE of the features
whose row changed and one INSERT of the new ones, matched by the id the file gives
(``source_id``). The triggers log every change as for any edit, under the reason
``import <file> by <user>`` and the import's id, so the import reads and reverts as one unit
(twin.history.revert.revert_import). Unchanged rows are not written at all: importing the
same file again changes nothing. A file with bad rows writes nothing unless ``skip_bad``; a
dry run does everything and rolls it back, so its report is exactly what would happen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from sqlalchemy import Connection, Engine, text

from twin.errors import Forbidden, InvalidInput, Problem, Unprocessable
from twin.imports.files import Source, batches, open_source
from twin.imports.rows import MAX_REPORTED, FieldMap, RowProblem, field_map, make_rows
from twin.layer import Layer
from twin.registry import get_layer
from twin.store.db import EditContext, set_context
from twin.users import User

IMPORT_DEVICE = "import"
BATCH = 5000
OUTLINE_SLACK_DEGREES = 1e-5  # about a metre here

_STAGE = """CREATE TEMP TABLE import_stage (row integer, source_id text, name text, props jsonb,
    tags text[], geom geometry) ON COMMIT DROP"""
_COPY = "COPY import_stage (row, source_id, name, props, tags, geom) FROM STDIN"
# Photos are the field's, not the file's: an import keeps them.
_UPDATE = """
UPDATE twin.features f
   SET name = s.name, tags = s.tags, geom = s.geom,
       props = s.props || CASE WHEN f.props ? 'photos'
                               THEN jsonb_build_object('photos', f.props -> 'photos')
                               ELSE '{}' END
  FROM import_stage s
 WHERE f.layer = :layer AND f.source_id = s.source_id
   AND (f.name IS DISTINCT FROM s.name OR f.props - 'photos' <> s.props OR f.tags <> s.tags
        OR ST_AsEWKB(f.geom) <> ST_AsEWKB(s.geom))"""
_INSERT = """
INSERT INTO twin.features (layer, name, props, tags, geom, source_id)
SELECT :layer, s.name, s.props, s.tags, s.geom, s.source_id FROM import_stage s
 WHERE NOT EXISTS (SELECT 1 FROM twin.features f
                    WHERE f.layer = :layer AND f.source_id = s.source_id)
 ORDER BY s.row"""
_SYNC = """
DELETE FROM twin.features f
 WHERE f.layer = :layer
   AND NOT EXISTS (SELECT 1 FROM import_seen s WHERE s.source_id = f.source_id)"""


@dataclass(frozen=True)
class ImportOptions:
    """How to read the file and what to do with it (the CLI's and the API's options)."""

    crs: str | None = None
    datum: str | None = None
    pairs: dict[str, str] = field(default_factory=dict)  # file field -> destination
    id_field: str | None = None
    file_layer: str | None = None  # which layer of a file that holds several
    dry_run: bool = False
    skip_bad: bool = False
    sync: bool = False


@dataclass
class ImportReport:
    """What an import did (or, dry, would do)."""

    file: str
    layer: str
    import_id: int | None = None
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    problem_count: int = 0
    ignored_fields: tuple[str, ...] = ()
    dry_run: bool = False
    written: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "layer": self.layer, "import_id": self.import_id,
                "read": self.read, "inserted": self.inserted, "updated": self.updated,
                "unchanged": self.unchanged, "deleted": self.deleted,
                "skipped": self.skipped, "problem_count": self.problem_count,
                "problems": [p.as_dict() for p in self.problems],
                "ignored_fields": list(self.ignored_fields), "dry_run": self.dry_run,
                "written": self.written}


class BadRows(Unprocessable):
    """A file with bad rows, refused whole: its report says every row's problems."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{report.problem_count} problem(s) in {report.skipped} row(s) of "
                         f"{report.file}: nothing imported (fix them, or import the good rows "
                         "with --skip-bad / skip_bad=true)", list(report.problems))
        self.report = report


def require_admin(user: User) -> None:
    """Imports, and reading what was imported, are for admins."""
    if user.role != "admin":
        raise Forbidden(f"only an admin may import; {user.name} is a {user.role}", [Problem(
            "role", user.role, "imports are for admins", "仅管理员可以导入")])


def import_file(engine: Engine, user: User, path: Path, layer_name: str,
                options: ImportOptions, progress: Callable[[int | None], Callable[[int], None]]
                | None = None, shown_name: str | None = None) -> ImportReport:
    """Import ``path`` into the layer ``layer_name`` as ``user`` (an admin); ``progress(total)``
    gives a callback advanced by the rows read."""
    require_admin(user)
    layer = get_layer(layer_name)
    source = open_source(path, options.crs, options.datum, options.file_layer)
    fields = field_map(layer, source.fields, source.driver, options.pairs, options.id_field)
    name = shown_name or path.name
    report = ImportReport(file=name, layer=layer.name, ignored_fields=fields.ignored,
                          dry_run=options.dry_run)
    advance = progress(source.count) if progress else None
    with engine.connect() as conn:
        transaction = conn.begin()
        outline = _outline(conn) if layer.group == "twin" else None
        set_context(conn, EditContext(actor=user.name, role=user.role, device=IMPORT_DEVICE,
                                      reason=f"import {name} by {user.name}"))
        report.import_id = conn.execute(text(
            "INSERT INTO twin.imports (layer, file, actor, options) VALUES (:l, :f, :a, :o) "
            "RETURNING id"), {"l": layer.name, "f": name, "a": user.name,
                              "o": json.dumps(_options_json(options, source))}).scalar_one()
        conn.execute(text("SELECT set_config('twin.import_id', :i, true)"),
                     {"i": str(report.import_id)})
        conn.execute(text(_STAGE))
        if options.sync:
            conn.execute(text("CREATE TEMP TABLE import_seen (source_id text PRIMARY KEY) "
                              "ON COMMIT DROP"))
        _stream(conn, layer, source, fields, outline, options, report, advance)
        refused = _refused(report, options)
        if options.sync and not refused:
            report.deleted = conn.execute(text(_SYNC), {"layer": layer.name}).rowcount
        conn.execute(text(
            "UPDATE twin.imports SET finished_at = clock_timestamp(), read = :read, "
            "inserted = :inserted, updated = :updated, unchanged = :unchanged, "
            "deleted = :deleted, skipped = :skipped WHERE id = :id"),
            {"id": report.import_id, "read": report.read, "inserted": report.inserted,
             "updated": report.updated, "unchanged": report.unchanged,
             "deleted": report.deleted, "skipped": report.skipped})
        if refused or options.dry_run:
            transaction.rollback()
        else:
            transaction.commit()
            report.written = True
    if refused:
        raise BadRows(report)
    return report


def _refused(report: ImportReport, options: ImportOptions) -> bool:
    """A file with bad rows writes nothing, unless its good rows were asked for (or it is a
    dry run, which reports what the good rows would do)."""
    return bool(report.skipped) and not (options.skip_bad or options.dry_run)


def _stream(conn: Connection, layer: Layer, source: Source, fields: FieldMap, outline: Any,
            options: ImportOptions, report: ImportReport,
            advance: Callable[[int], None] | None) -> None:
    """Read, check and write the file batch by batch; once a bad row makes the import
    refused, the rest is only read and checked, for the report."""
    raw = conn.connection.driver_connection
    assert raw is not None
    seen: set[str] = set()
    for batch in batches(source, BATCH):
        rows = make_rows(layer, fields, batch.first, batch.values, batch.fids,
                         batch.geometries, outline, seen)
        report.read += len(batch)
        report.skipped += len(rows.bad_rows)
        report.problem_count += len(rows.bad)
        room = MAX_REPORTED - len(report.problems)
        report.problems.extend(rows.bad[:max(room, 0)])
        if rows.good and not _refused(report, options):
            with raw.cursor() as cur, cur.copy(_COPY) as copy:
                for good in rows.good:
                    copy.write_row(good)
            # autovacuum never analyses a temporary table: without its size the planner
            # matched each batch by reading the whole layer, a scan that grew with it (the
            # ids are all it joins on; a geometry's statistics take longest)
            conn.execute(text("ANALYZE import_stage (source_id)"))
            updated = conn.execute(text(_UPDATE), {"layer": layer.name}).rowcount
            inserted = conn.execute(text(_INSERT), {"layer": layer.name}).rowcount
            conn.execute(text("TRUNCATE import_stage"))
            report.updated += updated
            report.inserted += inserted
            report.unchanged += len(rows.good) - updated - inserted
        if options.sync:
            ids = [r[1] for r in rows.good] + rows.ids_of_bad
            conn.execute(text("INSERT INTO import_seen SELECT unnest(CAST(:ids AS text[])) "
                              "ON CONFLICT DO NOTHING"), {"ids": ids})
        if advance:
            advance(len(batch))


def list_imports(conn: Connection, limit: int = 100, import_id: int | None = None
                 ) -> list[dict[str, Any]]:
    """The imports, newest first (or the one ``import_id``), with what each did."""
    return [dict(r) for r in conn.execute(text(
        "SELECT id, layer, file, actor, started_at, finished_at, read, inserted, updated, "
        "unchanged, deleted, skipped, options FROM twin.imports "
        "WHERE CAST(:id AS bigint) IS NULL OR id = :id ORDER BY id DESC LIMIT :n"),
        {"id": import_id, "n": limit}).mappings()]


def _outline(conn: Connection) -> Any:
    """The subdistrict: the union of its micro-grids, prepared for many point-in tests. None
    is refused: a twin's features are placed in its micro-grids, which come first."""
    wkb = conn.execute(text("SELECT ST_AsBinary(ST_Union(geom)) FROM twin.features "
                            "WHERE layer = 'micro_grids'")).scalar()
    if wkb is None:
        raise InvalidInput("the twin has no micro-grids yet: import them first "
                           "(twin import FILE micro_grids)", [Problem(
                               "layer", "micro_grids", "no micro-grids to place features in",
                               "请先导入微网格")])
    # a metre of slack: a building surveyed on the subdistrict's edge and brought from a
    # projected CRS lands a rounding error outside it, which an edit by hand would not do
    outline = shapely.buffer(shapely.from_wkb(bytes(wkb)), OUTLINE_SLACK_DEGREES)
    shapely.prepare(outline)
    return outline


def _options_json(options: ImportOptions, source: Source) -> dict[str, Any]:
    return {"crs": source.crs, "datum": options.datum, "map": options.pairs,
            "id": options.id_field, "file_layer": options.file_layer,
            "skip_bad": options.skip_bad, "sync": options.sync, "driver": source.driver}
