"""A read replica on the same machine (issue 23, item 3): what a read costs on it against the
same read on the primary, and how far it lags while the primary is written.

    .venv/bin/python -m bench.replica        # or: make bench-replica (after make bench-restore)

The twin is ``make bench-restore``'s (scale 20 with its history, in ``.twin/bench/restore``;
RESTORE_DIR names another). A replica is added with ``twin db replica add`` and removed at the
end. Then:

(a) reads: Twin's own SQL for a page of 100 buildings in a box of 300 m (the floor's Q1,
    ``bench.floor.twin_statement``) and one building (Q2), REPLICA_READS of each, alternating
    primary and replica on one connection each, warm; medians and the ratio replica/primary
    (the goal: at most 1.1);
(b) lag under writes: for REPLICA_WRITE_S seconds, one connection updates buildings as fast
    as it can (each its own transaction, through the triggers) while another samples, every
    20 ms, the primary's WAL position and the replica's replay position; a sample's lag is how
    long ago the primary was where the replica is now. p50, p99 and max (the goal: p99 < 1 s);
(c) read your writes, through ``twin serve --workers 2`` with TWIN_REPLICA_URLS naming the
    replica: a planner PATCHes a building's households and reads the building straight back,
    REPLICA_RYW times (10,000), each request on a new connection so that either worker may
    answer it; reads that missed their own write (the goal: none) and reads the replica served
    (the rest went to the primary, read your writes by LSN);
(d) what that costs a write: REPLICA_WRITES PATCHes (500) alternating between that server and
    one without TWIN_REPLICA_URLS (each of its writes also asks the primary for its WAL
    position and keeps it for the token); medians and their ratio.

On one machine a replica adds no cores (the issue says so): this measures cost, not capacity.
"""

from __future__ import annotations

import bisect
import os
import random
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg

from bench.floor import twin_statement
from bench.restore import BASE, TWIN, twin
from twin.settings import Settings
from twin.store.cluster import local_cluster
from twin.store.db import libpq_conninfo
from twin.store.replicas import replicas

READS = int(os.environ.get("REPLICA_READS", "400"))
WRITE_S = float(os.environ.get("REPLICA_WRITE_S", "30"))
RYW = int(os.environ.get("REPLICA_RYW", "10000"))
WRITES = int(os.environ.get("REPLICA_WRITES", "500"))


def _reads(primary: str, replica: str) -> dict[str, dict[str, float]]:
    with psycopg.connect(primary) as conn:
        box = conn.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                           "(SELECT ST_Extent(geom) AS e FROM twin.features "
                           "WHERE layer = 'buildings') x").fetchone()
        ids = [r[0] for r in conn.execute("SELECT id FROM twin.features WHERE layer = "
                                          "'buildings' ORDER BY random() LIMIT %s", (READS,))]
    assert box is not None
    rng = random.Random(23)  # noqa: S311 (boxes to read, not secrets)
    side = 300 / 111_000  # about 300 m, in degrees
    boxes = []
    for _ in range(READS):
        x, y = rng.uniform(box[0], box[2] - side), rng.uniform(box[1], box[3] - side)
        boxes.append({"x0": x, "y0": y, "x1": x + side, "y1": y + side})
    queries = {"Q1 page of 100 in a box": (twin_statement({"kind": "bbox", "limit": 100}),
                                           boxes),
               "Q2 one building": (twin_statement({"kind": "item"}),
                                   [{"id": i} for i in ids])}
    result: dict[str, dict[str, float]] = {}
    with psycopg.connect(primary, autocommit=True) as on_primary, \
            psycopg.connect(replica, autocommit=True) as on_replica:
        for name, (sql, params) in queries.items():
            times: dict[str, list[float]] = {"primary": [], "replica": []}
            for warm in (True, False):
                for values in params:
                    for where, conn in (("primary", on_primary), ("replica", on_replica)):
                        began = time.perf_counter()
                        with psycopg.ClientCursor(conn) as cur:
                            cur.execute(sql, values).fetchall()
                        if not warm:
                            times[where].append((time.perf_counter() - began) * 1000)
            p, r = (statistics.median(times[w]) for w in ("primary", "replica"))
            result[name] = {"primary_ms": p, "replica_ms": r, "ratio": r / p}
    return result


def _lag(primary: str, replica: str) -> dict[str, float]:
    stop = threading.Event()
    written = [0]

    def write() -> None:
        with psycopg.connect(primary, autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM twin.features WHERE layer = "
                                              "'buildings' ORDER BY id LIMIT 5000")]
            while not stop.is_set():
                conn.execute("UPDATE twin.features SET props = props || jsonb_build_object("
                             "'households', (props->>'households')::int %% 300 + 1) "
                             "WHERE id = %s", (ids[written[0] % len(ids)],))
                written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    when: list[float] = []  # each sample's moment, and the primary's WAL position then
    where: list[int] = []
    lags: list[float] = []
    ended = time.monotonic() + WRITE_S
    with psycopg.connect(primary, autocommit=True) as on_primary, \
            psycopg.connect(replica, autocommit=True) as on_replica:
        while time.monotonic() < ended:
            row = on_primary.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"
                                     ).fetchone()
            assert row is not None
            when.append(time.monotonic())
            where.append(int(row[0]))
            row = on_replica.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')"
                                     ).fetchone()
            assert row is not None
            now, replayed = time.monotonic(), int(row[0])
            # the latest moment the primary was no further than the replica is now
            at = bisect.bisect_right(where, replayed)
            lags.append(now - when[max(at - 1, 0)])
            time.sleep(0.02)
    stop.set()
    writer.join()
    if not written[0]:
        raise SystemExit("the writer wrote nothing: see its error above")
    lags.sort()
    return {"writes_per_s": written[0] / WRITE_S, "samples": len(lags),
            "p50_ms": lags[len(lags) // 2] * 1000,
            "p99_ms": lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000,
            "max_ms": lags[-1] * 1000}


@contextmanager
def _served(replica_url: str | None) -> Iterator[str]:
    """``twin serve --workers 2`` on the bench's twin (with the replica when named), on a free
    port, once it answers; its base URL. Its output goes to BASE/serve-*.log."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"} | {
        "TWIN_DATA_DIR": str(BASE), "TWIN_DB_NAME": "twin", "TWIN_DB_PORT": "5432"}
    if replica_url:
        env["TWIN_REPLICA_URLS"] = replica_url
    log = BASE / f"serve-{'replica' if replica_url else 'primary'}.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(TWIN), "serve", "--workers", "2", "--port",  # noqa: S603
                                   str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"twin serve exited: see {log}")
            time.sleep(0.1)
        else:
            raise SystemExit(f"twin serve did not answer in a minute: see {log}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _planner(url: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/auth/token", data={"username": "planner",
                                                   "password": Settings().demo_password})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _building(conninfo: str, offset: int) -> tuple[int, str]:
    """A building and its ETag."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT id, version FROM twin.features WHERE layer = 'buildings' "
                           "ORDER BY id OFFSET %s LIMIT 1", (offset,)).fetchone()
    assert row is not None
    return int(row[0]), f'"{row[0]}-{row[1]}"'


def _patch(client: httpx.Client, item: str, auth: dict[str, str], etag: str,
           households: int) -> str:
    """Write a building's households (based on ``etag``); its new ETag."""
    answer = client.patch(item, headers={**auth, "If-Match": etag}, json={
        "type": "Feature", "properties": {"households": households}, "reason": "bench"})
    answer.raise_for_status()
    return str(answer.headers["etag"])


def _read_your_writes(url: str, conninfo: str) -> dict[str, float]:
    auth = _planner(url)
    fid, etag = _building(conninfo, 100)
    item = f"{url}/collections/buildings/items/{fid}"
    missed = on_replica = 0
    writes: list[float] = []
    reads: list[float] = []
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for n in range(RYW):
            households = n % 300 + 1  # never the same twice running: each a new version
            began = time.perf_counter()
            etag = _patch(client, item, auth, etag, households)
            wrote = time.perf_counter()
            read = client.get(item, headers=auth)
            reads.append(time.perf_counter() - wrote)
            writes.append(wrote - began)
            read.raise_for_status()
            if read.headers["etag"] != etag or \
                    read.json()["properties"]["households"] != households:
                missed += 1
            on_replica += read.headers["twin-read-from"] != "primary"
    return {"missed": missed, "on_replica": on_replica,
            "write_ms": statistics.median(writes) * 1000,
            "read_ms": statistics.median(reads) * 1000}


def _write_cost(with_replica: str, without: str, conninfo: str) -> dict[str, float]:
    """PATCH medians through the two servers, alternating (one building each)."""
    times: dict[str, list[float]] = {with_replica: [], without: []}
    with httpx.Client() as client:
        state = {url: (_planner(url), *_building(conninfo, 200 + n))
                 for n, url in enumerate(times)}
        for n in range(WRITES):
            for url, spent in times.items():
                auth, fid, etag = state[url]
                began = time.perf_counter()
                etag = _patch(client, f"{url}/collections/buildings/items/{fid}", auth, etag,
                              n % 300 + 1)
                spent.append(time.perf_counter() - began)
                state[url] = (auth, fid, etag)
    p, q = (statistics.median(times[url]) * 1000 for url in (with_replica, without))
    return {"with_ms": p, "without_ms": q, "ratio": p / q}


def main() -> int:
    cluster = local_cluster(Settings(database_url=None, data_dir=BASE, db_name="twin",
                                     db_port=5432))
    if not cluster.is_initialised():
        raise SystemExit(f"no twin in {BASE}: run `make bench-restore` first")
    twin("db", "start")
    twin("db", "replica", "add")
    made = replicas(cluster)[-1]
    primary = libpq_conninfo(cluster.admin_url)
    replica = libpq_conninfo(made.cluster.admin_url)
    try:
        reads = _reads(primary, replica)
        lag = _lag(primary, replica)
        with _served(made.cluster.app_url) as routed, _served(None) as plain:
            ryw = _read_your_writes(routed, primary)
            cost = _write_cost(routed, plain, primary)
    finally:
        twin("db", "replica", "remove", str(made.number))
        twin("db", "stop")
    print(f"\nreads, medians of {READS} (warm, alternating):")
    print("| query | primary ms | replica ms | replica / primary | goal |\n"
          "|---|---:|---:|---:|---|")
    for name, r in reads.items():
        print(f"| {name} | {r['primary_ms']:.2f} | {r['replica_ms']:.2f} | {r['ratio']:.2f} | "
              f"<= 1.1: {'met' if r['ratio'] <= 1.1 else 'NOT met'} |")
    print(f"\nlag while one connection writes ({lag['writes_per_s']:.0f} updates a second, "
          f"{lag['samples']} samples): p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, "
          f"max {lag['max_ms']:.1f} ms (goal: p99 < 1,000 ms: "
          f"{'met' if lag['p99_ms'] < 1000 else 'NOT met'})")
    print(f"\nread your writes through twin serve --workers 2 with TWIN_REPLICA_URLS: {RYW:,} "
          f"PATCHes, each read straight back: {ryw['missed']:,} reads missed their write "
          f"(goal 0: {'met' if ryw['missed'] == 0 else 'NOT met'}), {ryw['on_replica']:,} "
          f"served by the replica ({ryw['on_replica'] / RYW:.1%}), the rest by the primary; "
          f"medians: PATCH {ryw['write_ms']:.2f} ms, GET {ryw['read_ms']:.2f} ms")
    print(f"a write's cost, {WRITES:,} PATCHes alternating: {cost['with_ms']:.2f} ms with "
          f"TWIN_REPLICA_URLS, {cost['without_ms']:.2f} ms without ({cost['ratio']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
