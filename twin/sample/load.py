"""Bulk loading into the twin with COPY; the triggers still derive grids and log every row."""

from __future__ import annotations

import contextlib
import json
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import shapely
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine, text

from twin.cases.rules import load_rules
from twin.errors import Conflict
from twin.hotline.rules import load_hotline_rules
from twin.registry import all_layers
from twin.sample.generator import LAYER_ORDER, SampleFeature, SamplePlan
from twin.store.db import LOAD_DEVICE, EditContext, set_context
from twin.users import DemoUser, add_user_rows

_COPY = "COPY twin.features (layer, name, props, tags, geom) FROM STDIN"


def feature_count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM twin.features")).scalar_one())


def _spilled(path: Path) -> Iterator[SampleFeature]:
    """The features a load spilled to ``path``, in the order written."""
    with path.open("rb") as f:
        while True:
            try:
                yield pickle.load(f)  # noqa: S301  (the file this process just wrote)
            except EOFError:
                return


def copy_features(conn: Connection, features: Iterable[SampleFeature]) -> int:
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
    return written


def load_sample(engine: Engine, twin: SamplePlan, actor: str, password_hash: str,
                progress: Callable[[str, int], Callable[[int], None]] | None = None) -> int:
    """Make a sample and load it into an empty database, with its demo accounts; how many
    features. Made a tile at a time, each tile's features spilled to a file per layer, then
    each layer loaded by one COPY, area layers first, so that every feature finds its
    subdistrict, micro-grid and residential area on insert: memory holds one tile whatever
    the scale. (A COPY per tile and layer made each statement of the load slower than the
    last, 3 s for the first tile, 18 s for the sixth: one statement a layer keeps it linear.)
    ``progress(label, total)`` returns a callback advancing that stage's bar."""
    known = all_layers()
    order = [name for name in LAYER_ORDER if name in known]
    order += [name for name in known if name not in order]
    with engine.begin() as conn, tempfile.TemporaryDirectory(prefix="twin-sample-") as spill:
        existing = feature_count(conn)
        if existing:
            raise Conflict(f"the twin already holds {existing} features; load the sample into "
                           "an empty database (e.g. TWIN_DB_NAME=other twin db start)")
        set_context(conn, EditContext(actor=actor, role="admin", device=LOAD_DEVICE,
                                      reason=f"sample twin loaded (seed {twin.seed}, "
                                             f"scale {twin.scale})"))
        files = {name: Path(spill) / f"{name}.pickle" for name in order}
        advance = progress("generating", twin.scale) if progress else None
        with contextlib.ExitStack() as stack:
            outs = {name: stack.enter_context(path.open("wb")) for name, path in files.items()}
            for tile in twin.tiles():
                for name, features in tile.items():
                    for feature in features:
                        pickle.dump(feature, outs[name], pickle.HIGHEST_PROTOCOL)
                if advance:
                    advance(1)
        written = 0
        advance = progress("loading layers", len(order)) if progress else None
        for name in order:
            written += copy_features(conn, _spilled(files[name]))
            if advance:
                advance(1)
        conn.execute(text("INSERT INTO twin.metadata (key, value) VALUES ('dataset', :v) "
                          "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"),
                     {"v": json.dumps(twin.metadata, ensure_ascii=False)})
        departments: list[str] = []
        if twin.spec.cases is not None:
            load_rules(conn, twin.spec.cases.categories, twin.spec.cases.calendar)
            if twin.spec.cases.hotline is not None:
                load_hotline_rules(conn, twin.spec.cases.hotline)
            departments = list(conn.execute(text(
                "SELECT code FROM twin.departments ORDER BY code")).scalars())
        squads = squad_grids(conn)
        grid_codes = list(conn.execute(text(
            "SELECT props ->> 'code' FROM twin.features WHERE layer = 'micro_grids' "
            "ORDER BY id")).scalars())
        users = demo_users(grid_codes, departments, squads)
        add_user_rows(conn, users, password_hash)
        conn.execute(text("INSERT INTO twin.squads (code, lead) SELECT unnest(CAST(:c AS text[])),"
                          " unnest(CAST(:l AS text[]))"),
                     {"c": list(squads), "l": [squad_lead(n) for n in range(1, len(squads) + 1)]})
        staff = [u[0] for u in users if u[1] != "worker"]
        accounts = {"users": staff[:5], "departments": len(departments),
                    "workers": len(grid_codes), "squad_leads": len(squads)}
        conn.execute(text("INSERT INTO twin.metadata (key, value) VALUES ('demo_accounts', :v)"),
                     {"v": json.dumps(accounts)})
    return written


def squad_grids(conn: Connection) -> dict[str, list[str]]:
    """Each squad (中队) named on the micro-grids, with its grids, in code order."""
    rows = conn.execute(text(
        "SELECT props ->> 'squad' AS squad, array_agg(props ->> 'code' ORDER BY props ->> 'code')"
        " FROM twin.features WHERE layer = 'micro_grids' AND props ->> 'squad' IS NOT NULL "
        "GROUP BY 1 ORDER BY 1")).all()
    return {row[0]: list(row[1]) for row in rows}


def demo_users(grid_codes: Sequence[str], departments: Sequence[str] = (),
               squads: dict[str, list[str]] | None = None) -> list[DemoUser]:
    """One worker per micro-grid; a planner, commander, admin and dispatcher; a user per
    department; a lead per squad (a worker answering for all its grids)."""
    staff: list[DemoUser] = [("planner", "planner", ()), ("commander", "commander", ()),
                             ("admin", "admin", ()), ("dispatcher", "dispatcher", ())]
    staff += [(department_user(code), "department", (), code) for code in departments]
    leads: list[DemoUser] = [(squad_lead(n), "worker", tuple(grids))
                             for n, grids in enumerate((squads or {}).values(), 1)]
    workers: list[DemoUser] = [(worker_name(code), "worker", (code,)) for code in grid_codes]
    return [*staff, *leads, *workers]


def department_user(code: str) -> str:
    return f"dept-{code}"


def squad_lead(n: int) -> str:
    return f"squad-lead-{n}"


def worker_name(grid_code: str) -> str:
    return f"worker-{grid_code}"
