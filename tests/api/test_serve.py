"""`twin serve` as `make run` starts it: a real server on a port, greeting with URLs and logins."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import DEMO_PASSWORD, Database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_prints_where_to_go_and_answers_http(sample_db: Database) -> None:
    port = free_port()
    twin = Path(sys.executable).parent / "twin"
    server = subprocess.Popen([str(twin), "serve", "--port", str(port)], env=sample_db.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                landing = httpx.get(f"{base}/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, "twin serve exited"
                assert time.monotonic() < deadline, "twin serve did not answer in 30 s"
                time.sleep(0.2)
        assert landing.status_code == 200
        token = httpx.post(f"{base}/auth/token",
                           data={"username": "admin", "password": DEMO_PASSWORD}).json()
        stats = httpx.get(f"{base}/stats",
                          headers={"Authorization": f"Bearer {token['access_token']}"})
        assert stats.status_code == 200 and stats.json()["layers"]["buildings"] > 3000
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"{base}/api.html" in output
    assert "planner" in output and "commander" in output and DEMO_PASSWORD in output
    assert "worker-" in output
    # the pages, and a worker whose micro-grid holds points to edit
    for page in ("/map", "/dashboard", "/field"):
        assert f"{base}{page}" in output, page
    assert "a worker with points to edit: worker-" in output
    assert "Ctrl+C" in output
