"""Bulk loading into the twin with COPY; the triggers still derive grids and log every row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from itertools import groupby

import shapely
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine, text

from twin.errors import Conflict
from twin.registry import all_layers
from twin.sample.generator import SampleFeature, SampleTwin
from twin.store.db import LOAD_DEVICE, EditContext, set_context
from twin.users import add_user_rows

_COPY = "COPY twin.features (layer, name, props, tags, geom) FROM STDIN"


def feature_count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM twin.features")).scalar_one())


def copy_features(conn: Connection, features: Iterable[SampleFeature],
                  advance: Callable[[int], None] | None = None, chunk: int = 2000) -> int:
    """COPY features into the twin inside ``conn``'s transaction; returns how many."""
    raw = conn.connection.driver_connection
    assert raw is not None
    written = 0
    with raw.cursor() as cur, cur.copy(_COPY) as copy:
        for feature in features:
            copy.write_row((feature.layer, feature.name, Jsonb(feature.props),
                            list(feature.tags),
                            shapely.to_wkb(feature.geometry, hex=True, include_srid=True)))
            written += 1
            if advance and written % chunk == 0:
                advance(chunk)
    if advance:
        advance(written % chunk)
    return written


def load_sample(engine: Engine, twin: SampleTwin, actor: str, password_hash: str,
                progress: Callable[[str, int], Callable[[int], None]] | None = None) -> None:
    """Load a generated twin into an empty database, with its demo accounts.

    ``progress(label, total)`` returns a callback advancing that stage's bar. Area layers go
    first so that every later feature finds its micro-grid and residential area on insert.
    """
    known = all_layers()
    with engine.begin() as conn:
        existing = feature_count(conn)
        if existing:
            raise Conflict(f"the twin already holds {existing} features; load the sample into "
                           "an empty database (e.g. TWIN_DB_NAME=other twin db start)")
        set_context(conn, EditContext(actor=actor, role="admin", device=LOAD_DEVICE,
                                      reason=f"sample twin loaded (seed {twin.seed}, "
                                             f"scale {twin.scale})"))
        by_layer = {k: list(g) for k, g in groupby(twin.features, key=lambda f: f.layer)}
        for name in known:
            rows = by_layer.get(name, [])
            advance = progress(f"{known[name].title_en}", len(rows)) if progress else None
            copy_features(conn, rows, advance)
        conn.execute(text("INSERT INTO twin.metadata (key, value) VALUES ('dataset', :v) "
                          "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
                     {"v": json.dumps(twin.metadata, ensure_ascii=False)})
        users = demo_users(twin.grid_codes)
        add_user_rows(conn, users, password_hash)
        accounts = {"users": [name for name, _, _ in users[:4]], "workers": len(users) - 3}
        conn.execute(text("INSERT INTO twin.metadata (key, value) VALUES ('demo_accounts', :v)"),
                     {"v": json.dumps(accounts)})


def demo_users(grid_codes: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """One worker per micro-grid, and one planner, commander and admin."""
    staff = [("planner", "planner", ()), ("commander", "commander", ()), ("admin", "admin", ())]
    workers = [(worker_name(code), "worker", (code,)) for code in grid_codes]
    return [*staff, *workers]


def worker_name(grid_code: str) -> str:
    return f"worker-{grid_code}"
