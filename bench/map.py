"""The live map (/map) in headless Chromium on a large twin: issue 7's goal.

    .venv/bin/python -m bench.map                      # the scale-20 history twin
    MAP_DB=twin_bench MAP_RUNS=5 .venv/bin/python -m bench.map

A Twin server on ``MAP_DB`` (default ``twin_history20``, about 127,000 features; made by
``make bench-history``) answers; Debian's Chromium opens /map with a commander's token
already kept (as after signing in once), ``MAP_RUNS`` times. Measured: the page's size, the
first view drawn (every shown layer loaded for the first view, from navigation start), the
view at zoom 16 around the centre where the buildings load, and an edit made through the API
until it shows on the open map; console errors and requests leaving 127.0.0.1 are counted.
Results: ``.twin/bench/map/<stamp>.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from playwright.sync_api import Page, sync_playwright

from bench.twin_server import serve_twin

ROOT = Path(__file__).resolve().parents[1]
DB = os.environ.get("MAP_DB", "twin_history20")
RUNS = int(os.environ.get("MAP_RUNS", "5"))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
DRAWN = """() => { const out = {};
  for (const [name, group] of Object.entries(window.twinLiveMap.groups)) {
    let n = 0; group.eachLayer(held => held.eachLayer(() => { n += 1; })); out[name] = n; }
  return out; }"""
SETTLED = "() => window.twinLiveMap && window.twinLiveMap.state.pending === 0"


def _local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob", "about") or parsed.hostname == "127.0.0.1"


def _run(page: Page, url: str, auth: dict[str, str]) -> dict[str, Any]:
    page.goto(f"{url}/map", wait_until="load")
    page.wait_for_function("() => window.twinLiveMap && window.twinLiveMap.state.ready",
                           timeout=60_000)
    first_ms = page.evaluate("window.twinLiveMap.state.ready")
    first = page.evaluate(DRAWN)
    started = page.evaluate("performance.now()")
    page.evaluate("() => { const m = window.twinLiveMap.map; m.setView(m.getCenter(), 16); }")
    page.wait_for_function(f"() => ({DRAWN})().buildings > 0", timeout=60_000)
    page.wait_for_function(SETTLED, timeout=60_000)
    zoomed_ms = page.evaluate("performance.now()") - started
    zoomed = page.evaluate(DRAWN)
    # an edit of a point in view, through the API, until the open map shows it
    point = page.evaluate("""() => { let found = null;
        window.twinLiveMap.groups.waste_points.eachLayer(held => held.eachLayer(f => {
          found = found || [f.feature.id, f.feature.properties.state]; }));
        return found; }""")
    edit_s = None
    if point:
        fid, state = point
        new = "full" if state != "full" else "ok"
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            item = http.get(f"/collections/waste_points/items/{fid}")
            sent = time.perf_counter()
            http.patch(f"/collections/waste_points/items/{fid}",
                       headers={"If-Match": item.headers["ETag"]},
                       json={"type": "Feature", "properties": {"state": new},
                             "reason": "bench: map latency"}).raise_for_status()
        page.wait_for_function(f"""() => {{ let ok = false;
            window.twinLiveMap.groups.waste_points.eachLayer(held => held.eachLayer(f => {{
              ok = ok || (f.feature.id === {fid} && f.feature.properties.state === '{new}');
            }})); return ok; }}""", timeout=30_000)
        edit_s = time.perf_counter() - sent
    return {"first_view_ms": first_ms, "first_view_features": first,
            "zoom16_ms": zoomed_ms, "zoom16_features": zoomed, "edit_shown_s": edit_s}


def main() -> None:
    server, url = serve_twin({**os.environ, "TWIN_DB_NAME": DB})
    try:
        token = httpx.post(f"{url}/auth/token", data={
            "username": "commander", "password": os.environ.get("TWIN_DEMO_PASSWORD",
                                                                 "twin-demo")}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        size = len(httpx.get(f"{url}/map").content)
        runs, errors, outside = [], [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for k in range(RUNS):
                print(f"  run {k + 1} of {RUNS} ...", flush=True)
                context = browser.new_context(viewport={"width": 1920, "height": 1080})
                context.add_init_script(
                    f"localStorage.setItem('twin.token', {json.dumps(token['access_token'])})")
                page = context.new_page()
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: None if _local(r.url) else outside.append(r.url))
                runs.append(_run(page, url, auth))
                context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs if r[key] is not None)

    print(f"\n{DB}: /map {size:,} bytes; {RUNS} runs in headless Chromium, 1920x1080")
    print("| measure | median | goal |\n|---|---:|---|")
    print(f"| /map HTML | {size / 1024:.0f} KB | < 1 MB |")
    print(f"| first view drawn | {median('first_view_ms'):,.0f} ms | < 3,000 ms |")
    print(f"| zoom 16, buildings in | {median('zoom16_ms'):,.0f} ms | - |")
    print(f"| an edit shown on the open map | {median('edit_shown_s'):.1f} s | < 10 s |")
    print(f"| console errors / requests leaving 127.0.0.1 | {len(errors)} / {len(outside)} "
          "| 0 / 0 |")
    print(f"first view: {runs[-1]['first_view_features']}; zoom 16: {runs[-1]['zoom16_features']}")
    out = ROOT / ".twin" / "bench" / "map"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}.json").write_text(json.dumps(
        {"db": DB, "size": size, "runs": runs, "errors": errors, "outside": outside}, indent=2))


if __name__ == "__main__":
    main()
