"""The layers' specs as the database keeps them (twin.layer_specs, version by version): read
into this process's registry, and the ``layers/`` files recorded by ``twin db migrate``."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from twin.layerspec import spec_changes
from twin.registry import file_specs, use_declared

# the newest version of each layer, and where it came from
_NEWEST = """SELECT DISTINCT ON (layer) layer, version, spec, source, changed_at, changed_by,
                     summary
                FROM twin.layer_specs ORDER BY layer, version DESC"""


def newest_specs(conn: Connection) -> dict[str, dict[str, Any]]:
    """Each layer's newest recorded version (empty before the revision that keeps them)."""
    if conn.execute(text("SELECT to_regclass('twin.layer_specs')")).scalar() is None:
        return {}
    return {row["layer"]: dict(row) for row in conn.execute(text(_NEWEST)).mappings()}


def refresh_layers(conn: Connection) -> bool:
    """Serve the layers as the database says: those whose newest version an admin declared
    take the place of their files (a file's own newer version is recorded by migrate, so it
    wins then). Whether anything changed."""
    newest = newest_specs(conn)
    return use_declared({name: row["spec"] for name, row in newest.items()
                         if row["source"] == "admin"})


def put_spec(conn: Connection, spec: dict[str, Any], source: str, summary: str) -> int:
    """Record ``spec`` as its layer's next version (twin.put_layer_spec: the partition, the
    counts, the servers told); its version number."""
    return int(conn.execute(text("SELECT twin.put_layer_spec(CAST(:spec AS json), :source, "
                                 ":summary)"),
                            {"spec": json.dumps(spec, ensure_ascii=False), "source": source,
                             "summary": summary}).scalar_one())


def record_files(conn: Connection) -> list[str]:
    """Record each ``layers/`` file whose spec differs from the last one recorded from it
    (a new file: its first version); the layers recorded. Any change is kept, for the
    history: a file is the programmer's word, not checked like an admin's change."""
    recorded = conn.execute(text(
        "SELECT DISTINCT ON (layer) layer, spec FROM twin.layer_specs WHERE source = 'file' "
        "ORDER BY layer, version DESC")).all()
    last = {layer: spec for layer, spec in recorded}
    changed = []
    for name, spec in file_specs().items():
        if last.get(name) == spec:
            continue
        summary = ("declared in layers/" + name + ".toml" if name not in last
                   else "; ".join(spec_changes(last[name], spec)[0]) or "reformatted")
        put_spec(conn, spec, "file", summary)
        changed.append(name)
    return changed
