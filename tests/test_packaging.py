"""Twin as a package: the wheel built from this repository, installed in a fresh virtual
environment away from the checkout, starts its database, loads its sample and serves."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import uuid
from pathlib import Path

import httpx

from tests.conftest import ROOT
from twin.settings import Settings
from twin.store.cluster import local_cluster


def test_the_package_list_is_the_tree() -> None:
    """pyproject.toml names every package (data/ ships as twin.sample.data): a new room
    must be added there, or the wheel would leave it out."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("twin", "api", "layers")
             for p in (ROOT / top).rglob("__init__.py")}
    assert listed == found | {"twin.sample.data"}
    assert config["tool"]["setuptools"]["package-dir"] == {"twin.sample.data": "data"}


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def test_a_wheel_installed_elsewhere_starts_loads_and_serves(tmp_path: Path) -> None:
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(ROOT), env=dict(os.environ), cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("twin-*.whl"))
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv), env=dict(os.environ), cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel),
         env=dict(os.environ), cwd=tmp_path)
    # the dependencies come from this environment's site-packages (a path, not a site dir:
    # the checkout's editable install is not seen)
    purelib = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                   env=dict(os.environ), cwd=tmp_path).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = _run(str(python), "-c", "import twin; print(twin.__file__)", env=dict(os.environ),
                 cwd=tmp_path).stdout
    assert where.startswith(str(venv)), where

    data_dir = ROOT / ".twin" / f"wheel-{uuid.uuid4().hex[:8]}"  # the postgres user reads it
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"}
    env.update(TWIN_DATA_DIR=str(data_dir), TWIN_DB_PORT="5432", TWIN_DB_NAME="twin",
               TWIN_DEMO_PASSWORD="wheel-demo")
    twin = str(venv / "bin" / "twin")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = None
    try:
        _run(twin, "db", "start", env=env, cwd=tmp_path)
        _run(twin, "db", "migrate", env=env, cwd=tmp_path)
        loaded = _run(twin, "sample", "--cases", "50", "--orders", "20", env=env, cwd=tmp_path)
        assert "loaded" in loaded.stdout
        server = subprocess.Popen([twin, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # a hang guard: a busy machine starts slowly
        while True:
            try:
                httpx.get(f"{base}/", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.2)
        for page in ("/", "/api.html", "/static/swagger-ui/swagger-ui-bundle.js",
                     "/static/map/live.js", "/static/signin/signin.js", "/favicon.ico",
                     "/map", "/field", "/dashboard"):
            assert httpx.get(f"{base}{page}").status_code == 200, page
        token = httpx.post(f"{base}/auth/token", data={"username": "planner",
                                                      "password": "wheel-demo"}).json()
        stats = httpx.get(f"{base}/stats",
                          headers={"Authorization": f"Bearer {token['access_token']}"})
        assert stats.json()["layers"]["buildings"] > 3000
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        subprocess.run([twin, "db", "stop"], env=env, cwd=tmp_path, check=False,
                       capture_output=True)
        shutil.rmtree(local_cluster(Settings(data_dir=data_dir)).pgdata.parent, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
