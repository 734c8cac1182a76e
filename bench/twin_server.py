"""One Twin server (one uvicorn worker) on a free loopback port, for the bench modules that
drive Twin alone over HTTP (history, soak); ``bench.servers`` runs it beside tipg and
pygeoapi for ``make bench``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def serve_twin(env: dict[str, str], log: Path | None = None
               ) -> tuple[subprocess.Popen[bytes], str]:
    """Start Twin with ``env`` (its TWIN_* settings) and wait until it answers; its output
    (5xx tracebacks included) goes to ``log`` when given."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = ("import uvicorn; from api.app import create_app; from twin.settings import Settings;"
            f"uvicorn.run(create_app(Settings()), host='127.0.0.1', port={port}, "
            "access_log=False, log_level='warning')")
    out = log.open("wb") if log is not None else None
    try:
        server = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT,  # noqa: S603
                                  stdout=out, stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/conformance", timeout=1)
            return server, url
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the Twin server did not start{f': see {log}' if log else ''}")
