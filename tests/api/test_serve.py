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


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`twin serve` on a free port, its output kept; the process and its base URL."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "twin"), "serve", "--port",
                               str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    return server, f"http://127.0.0.1:{port}"


def first_answer(server: subprocess.Popen[str], url: str) -> httpx.Response:
    """The first answer ``server`` gives at ``url``, once it listens."""
    deadline = time.monotonic() + 60  # a hang guard (a busy machine is slow)
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            assert server.poll() is None, "twin serve exited"
            assert time.monotonic() < deadline, "twin serve did not answer in 60 s"
            time.sleep(0.2)


def test_serve_prints_where_to_go_and_answers_http(sample_db: Database) -> None:
    server, base = serve(sample_db.env())
    try:
        assert first_answer(server, f"{base}/").status_code == 200
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
