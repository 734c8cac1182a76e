"""``python -m bench``: the whole run, one command (``make bench``).

1. wrk, and the venvs of tipg and pygeoapi (PyPI, once);
2. the bench database: Twin's cluster, migrated, the scale-20 sample, ``bench.buildings``;
3. the request list (fixed seed) and the versions of everything;
4. every server started (one worker each, loopback) and its memory checked; then query by
   query, for each target in turn, a correctness check and a wrk load with CPU sampling
   (the floors: psycopg threads); then the servers are stopped;
5. ``table.md`` and ``results.json`` in ``.twin/bench/results/<UTC stamp>/``.
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from bench import database, floor, load, memcheck, report, servers, workload
from bench.config import FLOOR_TARGETS, HTTP_TARGETS, Config
from bench.cpu import CpuSampler, tree_memory


class Run:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.t0 = time.time()
        cfg.results.mkdir(parents=True, exist_ok=True)
        self.log_file = (cfg.results / "run.log").open("a")
        self.results: dict[str, Any] = {
            "stamp": cfg.results.name,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "params": {"db_name": cfg.db_name, "scale": cfg.scale, "targets": cfg.targets,
                       "queries": cfg.queries, "duration": cfg.duration, "warmup": cfg.warmup,
                       "conns": cfg.conns, "wrk_threads": 1, "wrk_timeout": cfg.wrk_timeout,
                       "check_n": cfg.check_n, "seed": cfg.seed, "pg_tuning": cfg.pg_tuning,
                       "quiet_max": cfg.quiet_max, "quiet_wait": cfg.quiet_wait,
                       "retries": cfg.retries, "accept_encoding": None},
            "targets": {}}

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.time() - self.t0, 1)
        path = self.cfg.results / "results.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, ensure_ascii=False))
        tmp.replace(path)


def _sh(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def host_versions(cfg: Config) -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    wrk = _sh(["wrk", "-v"]).split()
    commit = _sh(["git", "-C", str(cfg.repo), "rev-parse", "--short", "HEAD"])
    dirty = _sh(["git", "-C", str(cfg.repo), "status", "--porcelain", "--", "api", "twin",
                 "layers"])
    return {"python": platform.python_version(),
            "twin": commit + ("+changes" if dirty else ""),
            "wrk": wrk[1] if len(wrk) > 1 else "?",
            "cpu": f"{cpu} x{len(Path('/proc/cpuinfo').read_text().split('processor')) - 1}"}


def start_server(run: Run, target: str, db: database.Database,
                 req: dict[str, Any]) -> servers.Server | None:
    """Start one server, wait for it, log in (Twin), and check its memory on big pages."""
    cfg = run.cfg
    out: dict[str, Any] = {"kind": "http", "queries": {}}
    run.results["targets"][target] = out
    run.log(f"{target}: starting on 127.0.0.1:{cfg.ports[target]} (one worker)")
    try:
        server = servers.start(cfg, target, db, req["extent"])
    except (RuntimeError, OSError) as e:
        out["error"] = str(e)
        run.log(f"{target}: could not start: {e}")
        return None
    try:
        out["pid"] = server.pid
        out["ready_s"] = servers.wait_ready(server, "/" if target == "twin" else "/collections")
        if target == "twin":
            server.headers["Authorization"] = f"Bearer {servers.twin_token(cfg, server)}"
        run.log(f"{target}: ready after {out['ready_s']} s (pid {server.pid})")
        if cfg.memcheck:
            out["memory"] = memcheck.run(server, req["extent"], cfg.mem_pages)
            m = out["memory"]
            run.log(f"{target}: memory: peak RSS {m['peak_rss_mb_before']} MB at start, "
                    f"{m['peak_rss_mb_after']} MB after {len(m['pages'])} pages of "
                    f"{m['features_per_page']} features ({m['mb_per_page']} MB, "
                    f"{m['ms_per_page']} ms each)")
    except (RuntimeError, OSError, ValueError) as e:
        out["error"] = str(e)
        run.log(f"{target}: {e}")
        servers.stop(server, run.log)
        return None
    finally:
        run.save()
    return server


def http_cell(run: Run, server: servers.Server, db: database.Database, req: dict[str, Any],
              q: str, check_conn: psycopg.Connection[Any]) -> None:
    """Check one query on one running server, then load it."""
    cfg, target = run.cfg, server.name
    out = run.results["targets"][target]["queries"]
    spec, plist = req["queries"][q], workload.paths_for(target, req)[q]
    if plist is None:
        out[q] = {"skipped": "not expressible in this setup"}
        run.log(f"{target} {q}: not expressible in this setup")
        return
    chk = load.check(server.base, server.headers, spec, plist, check_conn, cfg.check_n)
    entry: dict[str, Any] = {"example": plist[0], "n_paths": len(plist), "check": chk}
    out[q] = entry
    if not chk["available"]:
        entry["skipped"] = chk["verdict"]
        run.log(f"{target} {q}: {chk['verdict']}")
        return
    run.log(f"{target} {q}: check {chk['verdict']}; loading {cfg.warmup}+{cfg.duration} s")
    sampler = CpuSampler(db.postmaster_pid, db.dbname, server.pid)
    try:
        entry.update(load.load(cfg, sampler, server.base, plist, cfg.results / "paths" / target,
                               q, server.headers.get("Authorization")))
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        entry["skipped"] = f"wrk failed: {e}"
        run.log(f"{target} {q}: wrk failed: {e}")
        return
    c = entry["cpu"]
    run.log(f"{target} {q}: {entry['rps']} req/s, p50 {entry['p50_ms']} ms, "
            f"p99 {entry['p99_ms']} ms, {entry['bytes_per_req'] / 1024:.1f} KB, "
            f"CPU ms/req server {c['server_ms_per_req']} + db {c['db_ms_per_req']}, "
            f"other {100 * c['other_frac']:.0f} %")


def floor_cell(run: Run, target: str, db: database.Database, req: dict[str, Any], q: str,
               check_conn: psycopg.Connection[Any]) -> None:
    """Check one query on one floor, then load it: the floors differ only in the statement."""
    cfg = run.cfg
    out = run.results["targets"].setdefault(target, {
        "kind": "floor", "queries": {},
        "client": f"psycopg {psycopg.__version__} ClientCursor, {cfg.conns} threads, "
                  "one connection each"})
    spec = req["queries"][q]
    sql = floor.statement(target, spec, check_conn)
    chk = floor.check(db, spec, sql, check_conn, cfg.check_n)
    run.log(f"{target} {q}: check {chk['verdict']}; loading {cfg.warmup}+{cfg.duration} s")
    entry = floor.run_query(cfg, db, CpuSampler(db.postmaster_pid, db.dbname), spec, sql)
    entry["check"] = chk
    out["queries"][q] = entry
    c = entry["cpu"]
    run.log(f"{target} {q}: {entry['rps']} q/s, p50 {entry['p50_ms']} ms, p99 "
            f"{entry['p99_ms']} ms, {entry['bytes_per_req'] / 1024:.1f} KB, db CPU "
            f"{c['db_ms_per_req']} ms/q, client {c['client_ms_per_req']} ms/q")


def measure_all(run: Run, db: database.Database, req: dict[str, Any]) -> None:
    """All servers up at once (idle ones cost nothing), then query by query, target by
    target: the cells compared with each other are minutes apart, not the whole run."""
    cfg = run.cfg
    running: dict[str, servers.Server] = {}
    try:
        for t in cfg.targets:
            if t in HTTP_TARGETS:
                server = start_server(run, t, db, req)
                if server:
                    running[t] = server
        with db.connect() as check_conn:
            for q in cfg.queries:
                for t in cfg.targets:
                    if t in FLOOR_TARGETS:
                        floor_cell(run, t, db, req, q, check_conn)
                    elif t in running:
                        try:
                            http_cell(run, running[t], db, req, q, check_conn)
                        except (RuntimeError, OSError, ValueError) as e:
                            run.results["targets"][t]["queries"][q] = {"skipped": f"failed: {e}"}
                            run.log(f"{t} {q}: failed: {e}")
                    run.save()
        for t, server in running.items():
            run.results["targets"][t]["memory_after_load"] = {
                k: v for k, v in tree_memory(server.pid).items() if k != "per_pid_kb"}
    finally:
        for server in running.values():
            servers.stop(server, run.log)
        run.save()


def main() -> int:
    cfg = Config.from_env()
    run = Run(cfg)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    run.log(f"bench: results in {cfg.results}")
    run.log(f"targets {','.join(cfg.targets)}; queries {','.join(cfg.queries)}; "
            f"{cfg.warmup}+{cfg.duration} s per cell at concurrency {cfg.conns}")
    servers.ensure_wrk(run.log)
    for t in cfg.targets:
        servers.ensure_venv(cfg, t, run.log)
    run.log(f"database {cfg.db_name}: cluster, migrations, sample scale {cfg.scale}")
    db = database.prepare(cfg, run.log)
    try:
        with db.connect() as conn:
            shares = database.use_shares(conn)
            q3 = database.choose_q3_use(cfg.q3_use, shares)
            req = workload.build(conn, cfg.seed, cfg.n_centres, q3)
        (cfg.results / "requests.json").write_text(json.dumps(req))
        run.results["dataset"] = {"rows": req["rows"], "extent": req["extent"],
                                  "use_shares": shares, "q3_use": q3}
        run.results["requests"] = {
            q: {"what": s["what"], "n": len(s.get("bboxes") or s.get("ids") or s.get("tiles")),
                **{k: s[k] for k in ("matched_mean", "returned_mean", "full_pages") if k in s}}
            for q, s in req["queries"].items()}
        run.log(f"dataset: {req['rows']} buildings; Q3 uses use='{q3}' "
                f"({100 * shares.get(q3, 0):.1f} %); uses {shares}")
        for q, r in run.results["requests"].items():
            run.log(f"  {q}: {r}")
        versions: dict[str, dict[str, str]] = {"host": host_versions(cfg),
                                                "database": database.versions(db)}
        for t in cfg.targets:
            if t in HTTP_TARGETS:
                versions[t] = servers.package_versions(cfg, t)
        versions["floor"] = {"psycopg": psycopg.__version__}
        run.results["versions"] = versions
        (cfg.results / "versions.json").write_text(json.dumps(versions, indent=1))
        run.log(f"versions: {versions}")
        run.save()
        measure_all(run, db, req)
    finally:
        if db.started_cluster and not cfg.keep_db:
            database.twin_cli(cfg, "db", "stop", log=run.log)
        run.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        run.save()
    table = report.render(run.results)
    (cfg.results / "table.md").write_text(table)
    print("\n" + table, flush=True)
    run.log(f"bench: done in {(time.time() - run.t0) / 60:.1f} min; {cfg.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
