"""Peak memory of a server while it serves 10,000-feature pages.

Right after start-up (before any load), the server's peak RSS (VmHWM) is read; then
``MEM_PAGES`` pages of ``limit=10000`` over the whole extent are fetched one after another,
following each page's ``next`` link, and VmHWM is read again. A server that builds the whole
page in memory grows with the page; one that streams it should not.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from bench.cpu import tree_memory
from bench.servers import Server, http
from bench.workload import SPELLING


def next_link(doc: dict[str, Any]) -> str | None:
    for link in doc.get("links") or []:
        if link.get("rel") == "next" and "html" not in str(link.get("type", "")):
            href: str = link["href"]
            return href
    return None


def run(server: Server, extent: list[float], pages: int) -> dict[str, Any]:
    sp = SPELLING[server.name]
    bbox = ",".join(f"{v:.6f}" for v in extent)
    url: str | None = (f"{server.base}/collections/{quote(sp['collection'], safe='')}/items"
                       f"?bbox={bbox}&limit=10000" + (f"&{sp['fmt']}" if sp["fmt"] else ""))
    before = tree_memory(server.pid)
    got: list[dict[str, Any]] = []
    while url and len(got) < pages:
        status, _, body, secs = http("GET", url, server.headers, timeout=300)
        entry: dict[str, Any] = {"status": status, "ms": round(secs * 1000, 1),
                                 "mb": round(len(body) / 2**20, 2)}
        if status != 200:
            entry["error"] = body[:200].decode("utf-8", "replace")
            got.append(entry)
            break
        doc = json.loads(body)
        entry["features"] = len(doc.get("features") or [])
        got.append(entry)
        url = next_link(doc)
    after = tree_memory(server.pid)
    ok = [p for p in got if p["status"] == 200]
    return {"pages": got, "before": before, "after": after,
            "peak_rss_mb_before": before["peak_rss_mb_max"],
            "peak_rss_mb_after": after["peak_rss_mb_max"],
            "ms_per_page": round(sum(p["ms"] for p in ok) / len(ok), 1) if ok else None,
            "mb_per_page": round(sum(p["mb"] for p in ok) / len(ok), 2) if ok else None,
            "features_per_page": round(sum(p["features"] for p in ok) / len(ok)) if ok else None}
