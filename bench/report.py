"""The Markdown tables of a run, from its results JSON (``python -m bench.report FILE``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.config import FLOOR_TARGETS, QUERY_ORDER, TARGET_ORDER

DASH = "–"


def _f(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[len(s) // 2]


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return DASH
    return f"{a / b:.2f}×"


def cell(results: dict[str, Any], target: str, query: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = results.get("targets", {}).get(target, {}).get(
        "queries", {}).get(query)
    return found


def measured(entry: dict[str, Any] | None) -> bool:
    return bool(entry) and "rps" in (entry or {})


def cpu_per_req(entry: dict[str, Any] | None) -> float | None:
    if not entry or not measured(entry):
        return None
    cpu = entry["cpu"]
    return float(cpu["server_ms_per_req"]) + float(cpu["db_ms_per_req"])


def main_table(results: dict[str, Any]) -> list[str]:
    lines = ["| query | target | req/s | p50 ms | p99 ms | CPU ms/req server | CPU ms/req db | "
             "KB/resp | features/resp | n | 1-client ms | other CPU % | errors | check |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    targets = [t for t in TARGET_ORDER if t in results.get("targets", {})]
    for q in QUERY_ORDER:
        for t in targets:
            e = cell(results, t, q)
            if e is None:
                continue
            chk = e.get("check") or {}
            if not measured(e):
                reason = e.get("skipped") or chk.get("verdict") or "not measured"
                lines.append(f"| {q} | {t} | " + " | ".join([DASH] * 11) + f" | {reason} |")
                continue
            cpu = e["cpu"]
            feats = chk.get("features") or []
            n_feats = _f(sum(feats) / len(feats), 0) if feats else DASH
            one = _f(_median(chk.get("single_ms") or []))
            other = f"{100 * cpu.get('other_frac', 0.0):.0f}"
            if cpu.get("contended"):
                other += " ⚠"
            errors = sum(v for v in e.get("errors", {}).values() if isinstance(v, int))
            lines.append(
                f"| {q} | {t} | {e['rps']:.1f} | {e['p50_ms']:.1f} | {e['p99_ms']:.1f} | "
                f"{cpu['server_ms_per_req']:.2f} | {cpu['db_ms_per_req']:.2f} | "
                f"{e['bytes_per_req'] / 1024:.1f} | {n_feats} | {e['requests']} | "
                f"{DASH if t in FLOOR_TARGETS else one} | {other} | {errors} | "
                f"{chk.get('verdict', DASH)} |")
    return lines


def ratio_table(results: dict[str, Any]) -> list[str]:
    others = [t for t in TARGET_ORDER if t != "twin" and t in results.get("targets", {})]
    if "twin" not in results.get("targets", {}) or not others:
        return []
    head = ["query", "Twin req/s"] + [f"Twin/{t} req/s" for t in others] + [
        "Twin CPU ms/req"] + [f"Twin/{t} CPU/req" for t in others]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for q in QUERY_ORDER:
        tw = cell(results, "twin", q)
        if tw is None:
            continue
        if not measured(tw):
            lines.append(f"| {q} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
            continue
        row = [q, f"{tw['rps']:.1f}"]
        for t in others:
            o = cell(results, t, q)
            row.append(_ratio(tw["rps"], o["rps"]) if o and measured(o) else DASH)
        row.append(_f(cpu_per_req(tw), 2))
        for t in others:
            row.append(_ratio(cpu_per_req(tw), cpu_per_req(cell(results, t, q))))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def memory_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for t in TARGET_ORDER:
        m = results.get("targets", {}).get(t, {}).get("memory")
        if not m:
            continue
        load = results["targets"][t].get("memory_after_load") or {}
        pages = [p for p in m["pages"] if p["status"] == 200]
        rows.append(f"| {t} | {m['peak_rss_mb_before']:.0f} | {m['peak_rss_mb_after']:.0f} | "
                    f"{len(pages)} | {_f(m.get('features_per_page'), 0)} | "
                    f"{_f(m.get('mb_per_page'))} | {_f(m.get('ms_per_page'), 0)} | "
                    f"{_f(load.get('peak_rss_mb_max'), 0)} |")
    if not rows:
        return []
    return ["| server | peak RSS after start MB | peak RSS after 10k pages MB | pages | "
            "features/page | MB/page | ms/page | peak RSS after load MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|", *rows]


def versions_lines(v: dict[str, dict[str, str]]) -> list[str]:
    host, pg = v.get("host", {}), v.get("database", {})
    lines = [f"Host: {host.get('cpu', '?')}; Python {host.get('python', '?')}, "
             f"wrk {host.get('wrk', '?')}. PostgreSQL {pg.get('postgresql', '?')}, "
             f"PostGIS {pg.get('postgis', '?')} (GEOS {pg.get('geos', '?')}), "
             f"shared_buffers {pg.get('shared_buffers', '?')}, jit {pg.get('jit', '?')}, "
             f"max_parallel_workers_per_gather {pg.get('max_parallel_workers_per_gather', '?')}."]
    heads = {"twin": f"Twin {host.get('twin', '?')}", "tipg": "tipg", "pygeoapi": "pygeoapi",
             "floor": "floor client"}
    for key, head in heads.items():
        pkgs = v.get(key)
        if pkgs:
            lines.append(f"{head}: " + ", ".join(f"{k} {val}" for k, val in pkgs.items()) + ".")
    return [" ".join(lines)]


def render(results: dict[str, Any]) -> str:
    p = results.get("params", {})
    v = results.get("versions", {})
    ds = results.get("dataset", {})
    out = [f"# Twin benchmark {results.get('stamp', '')}", "",
           f"Dataset: {ds.get('rows', '?')} buildings (twin sample scale {p.get('scale')}, "
           f"database {p.get('db_name')}); Q3 filter use='{ds.get('q3_use')}' "
           f"({100 * ds.get('use_shares', {}).get(ds.get('q3_use', ''), 0):.1f} % of buildings). "
           f"wrk closed loop, {p.get('conns')} connections, {p.get('warmup')} s warm-up + "
           f"{p.get('duration')} s timed per cell; one server worker each; "
           f"jit/parallel tuning {'on' if p.get('pg_tuning') else 'off'}.", "",
           *versions_lines(v), ""]
    out += main_table(results)
    ratios = ratio_table(results)
    if ratios:
        out += ["", "Twin relative to the others: req/s ratio (> 1: Twin serves more) and "
                "server+db CPU per request ratio (< 1: Twin spends less).", "", *ratios]
    mem = memory_table(results)
    if mem:
        out += ["", "Memory: sequential `limit=10000` pages over the whole extent (following "
                "`next`), before any load; VmHWM of the largest server process.", "", *mem]
    req = results.get("requests", {})
    if req:
        out += ["", "Requests: " + "; ".join(
            f"{q} {r['what']} ({r['n']} distinct"
            + (f", {r['returned_mean']:.0f} features on average" if "returned_mean" in r else "")
            + ")" for q, r in req.items()) + "."]
    if results.get("elapsed_s"):
        out += ["", f"Run took {results['elapsed_s'] / 60:.1f} min."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.report .twin/bench/results/<stamp>/results.json")
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
