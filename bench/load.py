"""Correctness first, then load: one query against one running HTTP server.

The first ``CHECK_N`` requests are fetched one at a time and compared with SQL (the ids of
``ORDER BY id LIMIT n``, and ``numberMatched`` where a server gives one), then fetched once
more to time them unloaded (``single_ms``). A query none of
whose checked requests succeeds (404 for a route not there yet, 400 for an unknown
parameter) is reported as *not available* and not loaded. Then wrk runs a closed loop at
concurrency ``CONNS``: a warm-up that is thrown away, then the timed window, with /proc
sampled around it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.config import Config
from bench.cpu import CpuSampler
from bench.servers import http
from bench.workload import count, expected_ids

LUA = Path(__file__).resolve().parent / "wrk_paths.lua"
MVT_TYPES = ("mvt", "protobuf", "vector-tile")
Measure = Callable[[], tuple[dict[str, Any], dict[str, Any]]]


def _short(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace")
    try:
        doc = json.loads(body)
    except ValueError:
        return text
    if isinstance(doc, dict):
        for key in ("description", "detail", "message", "title", "code"):
            if doc.get(key):
                return str(doc[key])[:200]
    return text


def check(base: str, headers: dict[str, str], spec: dict[str, Any], paths: list[str],
          conn: psycopg.Connection[Any], k: int) -> dict[str, Any]:
    """Compare the first k answers with SQL; ``available`` is False when none succeeded."""
    rep: dict[str, Any] = {"checked": 0, "ok": 0, "ids_equal": 0, "matched_given": 0,
                           "matched_equal": 0, "statuses": {}, "errors": [], "first_ms": [],
                           "single_ms": [], "bytes": [], "features": []}
    for i, path in enumerate(paths[:k]):
        try:
            status, ctype, body, secs = http("GET", base + path, headers)
        except OSError as e:
            rep["errors"].append(f"{path}: {e!r}")
            continue
        rep["checked"] += 1
        rep["statuses"][str(status)] = rep["statuses"].get(str(status), 0) + 1
        rep["first_ms"].append(round(secs * 1000, 2))
        rep["bytes"].append(len(body))
        if status != 200:
            if len(rep["errors"]) < 3:
                rep["errors"].append(f"HTTP {status}: {_short(body)}")
            continue
        if spec["kind"] == "tile":
            if body and any(t in ctype for t in MVT_TYPES):
                rep["ok"] += 1
                rep["ids_equal"] += 1  # a tile's ids are not decoded; type and body are checked
            elif len(rep["errors"]) < 3:
                rep["errors"].append(f"not a vector tile: {ctype!r}, {len(body)} bytes")
            continue
        try:
            doc = json.loads(body)
        except ValueError as e:
            rep["errors"].append(f"bad JSON: {e}")
            continue
        rep["ok"] += 1
        want = expected_ids(conn, spec, i)
        if spec["kind"] == "item":
            got = [doc.get("id")]
        else:
            feats = doc.get("features") or []
            got = [f.get("id") for f in feats]
            rep["features"].append(len(feats))
            if doc.get("numberMatched") is not None:
                rep["matched_given"] += 1
                if doc["numberMatched"] == count(conn, spec, i):
                    rep["matched_equal"] += 1
        if [str(x) for x in got] == [str(x) for x in want]:
            rep["ids_equal"] += 1
        elif len(rep["errors"]) < 3:
            rep["errors"].append(f"ids differ on {path}: got {len(got)} first {got[:3]}, "
                                 f"want {len(want)} first {want[:3]}")
    rep["available"] = rep["ok"] > 0
    rep["verdict"] = verdict(spec, rep)
    if rep["available"]:
        # the same requests again, one at a time: unloaded latency of a settled server (the
        # first pass may still pay for the previous cell, e.g. a pool reconnecting)
        for path in paths[:k]:
            rep["single_ms"].append(round(http("GET", base + path, headers)[3] * 1000, 2))
    return rep


def verdict(spec: dict[str, Any], rep: dict[str, Any]) -> str:
    if not rep["available"]:
        first = rep["errors"][0] if rep["errors"] else "no answer"
        return f"not available ({first})"
    what = "MVT" if spec["kind"] == "tile" else "ids =SQL"
    out = f"{rep['ids_equal']}/{rep['checked']} {what}"
    if rep["matched_given"]:
        out += f", numberMatched {rep['matched_equal']}/{rep['matched_given']}"
    if rep["ids_equal"] < rep["checked"]:
        out += " ✗"
    return out


def gated(cfg: Config, sampler: CpuSampler, measure: Measure,
          ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Measure (after waiting for a quiet host, when asked); rerun a contended window up to
    RETRIES times and keep the least contended attempt."""
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    attempts: list[dict[str, Any]] = []
    for _ in range(cfg.retries + 1):
        gate = (sampler.wait_quiet(cfg.quiet_max, cfg.quiet_wait)
                if cfg.quiet_wait > 0 and cfg.quiet_max < 1 else None)
        res, cpu = measure()
        attempts.append({"gate": gate, "other_frac": cpu["other_frac"], "rps": res.get("rps")})
        runs.append((res, cpu))
        if cpu["other_frac"] <= cfg.quiet_max:
            break
    res, cpu = min(runs, key=lambda rc: float(rc[1]["other_frac"]))
    cpu["contended"] = cpu["other_frac"] > cfg.quiet_max
    return res, cpu, attempts


def run_wrk(cfg: Config, base: str, paths_file: Path, seconds: int,
            auth: str | None) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{cfg.conns}", f"-d{seconds}s", "--timeout", f"{cfg.wrk_timeout}s",
           "--latency", "-s", str(LUA), base, "--", str(paths_file)]
    env = {**os.environ, "BENCH_AUTHORIZATION": auth or ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,  # noqa: S603
                          timeout=seconds + cfg.wrk_timeout + 30)
    m = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-400:]} "
                           f"{done.stderr[-400:]}")
    raw: dict[str, Any] = json.loads(m.group(1))
    return raw


def summarize(w: dict[str, Any]) -> dict[str, Any]:
    secs = w["duration_us"] / 1e6
    n = int(w["requests"])
    return {"requests": n, "rps": round(n / secs, 2) if secs else 0.0,
            "p50_ms": round(w["p50_us"] / 1000, 2), "p90_ms": round(w["p90_us"] / 1000, 2),
            "p99_ms": round(w["p99_us"] / 1000, 2), "mean_ms": round(w["lat_mean_us"] / 1000, 2),
            "max_ms": round(w["lat_max_us"] / 1000, 2),
            "bytes_per_req": round(w["bytes"] / n) if n else 0,
            "errors": {"status": w["err_status"], "timeout": w["err_timeout"],
                       "connect": w["err_connect"], "read": w["err_read"],
                       "write": w["err_write"]}}


def per_request(entry: dict[str, Any], cpu: dict[str, Any]) -> None:
    n = max(1, int(entry["requests"]))
    cpu["server_ms_per_req"] = round(cpu["server_cpu_s"] * 1000 / n, 3)
    cpu["db_ms_per_req"] = round(cpu["db_cpu_s"] * 1000 / n, 3)
    cpu["client_ms_per_req"] = round(cpu["client_cpu_s"] * 1000 / n, 3)


def load(cfg: Config, sampler: CpuSampler, base: str, paths: list[str], work: Path,
         name: str, auth: str | None) -> dict[str, Any]:
    """Warm-up, then the timed window; every number of the cell."""
    work.mkdir(parents=True, exist_ok=True)
    paths_file = work / f"{name}.paths"
    paths_file.write_text("\n".join(paths) + "\n")

    def measure() -> tuple[dict[str, Any], dict[str, Any]]:
        if cfg.warmup > 0:
            run_wrk(cfg, base, paths_file, cfg.warmup, auth)
        a = sampler.snap()
        with sampler.tracking() as seen:
            w = run_wrk(cfg, base, paths_file, cfg.duration, auth)
        b = sampler.snap()
        return summarize(w), sampler.delta(a, b, seen)

    entry, cpu, attempts = gated(cfg, sampler, measure)
    per_request(entry, cpu)
    entry["cpu"] = cpu
    entry["attempts"] = attempts
    return entry
