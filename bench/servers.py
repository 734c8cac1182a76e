"""Start, probe and stop the three HTTP servers, each with one worker and no access log.

- Twin: uvicorn in the project's venv, ``create_app(Settings())`` on the bench database;
- tipg: ``uvicorn tipg.main:app --workers 1`` from ``<work>/venv-tipg``;
- pygeoapi: ``gunicorn --workers 1`` (sync worker) from ``<work>/venv-pygeoapi``, provider
  PostgreSQL, ``limits.max_items: 10000`` (the default of 10 would cap Q5 silently).

Every server listens on 127.0.0.1 only and is stopped by the PID this module started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.config import Config
from bench.cpu import descendants, read_procs
from bench.database import Database, tipg_url

Log = Callable[[str], None]

TWIN_MAIN = (
    "import uvicorn\n"
    "from api.app import create_app\n"
    "from twin.settings import Settings\n"
    "import sys\n"
    "uvicorn.run(create_app(Settings()), host='127.0.0.1', port=int(sys.argv[1]), "
    "access_log=False, log_level='warning')\n"
)
VENV_PACKAGES = {
    "tipg": lambda cfg: [cfg.tipg_spec, "uvicorn"],
    "pygeoapi": lambda cfg: [cfg.pygeoapi_spec, "gunicorn", "psycopg2-binary", "GeoAlchemy2",
                             "SQLAlchemy", "pygeofilter"],
}
VERSION_PACKAGES = {
    "twin": ["fastapi", "starlette", "uvicorn", "pydantic", "psycopg", "psycopg-pool",
             "SQLAlchemy"],
    "tipg": ["tipg", "fastapi", "starlette", "uvicorn", "asyncpg", "pydantic", "cql2",
             "orjson"],
    "pygeoapi": ["pygeoapi", "Flask", "gunicorn", "SQLAlchemy", "GeoAlchemy2",
                 "psycopg2-binary", "pygeofilter", "shapely"],
}


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)
    _log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


def python_of(cfg: Config, target: str) -> Path:
    if target == "twin":
        return cfg.repo / ".venv" / "bin" / "python"
    return cfg.work / f"venv-{target}" / "bin" / "python"


def ensure_venv(cfg: Config, target: str, log: Log) -> None:
    """``<work>/venv-<target>`` with its pinned packages from PyPI (once per spec)."""
    if target not in VENV_PACKAGES:
        return
    venv = cfg.work / f"venv-{target}"
    specs = VENV_PACKAGES[target](cfg)
    marker = venv / ".bench-spec"
    if marker.exists() and marker.read_text() == json.dumps(specs):
        return
    log(f"  venv {venv}: pip install {' '.join(specs)}")
    if not (venv / "bin" / "python").exists():
        subprocess.run([cfg.base_python, "-m", "venv", str(venv)], check=True)  # noqa: S603
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    done = subprocess.run([*pip, *specs], capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"pip install into {venv} failed:\n{done.stderr[-2000:]}")
    marker.write_text(json.dumps(specs))


def package_versions(cfg: Config, target: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([str(python_of(cfg, target)), "-c", code, *VERSION_PACKAGES[target]],  # noqa: S603
                          capture_output=True, text=True, check=False)
    try:
        found: dict[str, str] = json.loads(done.stdout)
    except ValueError:
        return {}
    return found


def ensure_wrk(log: Log) -> None:
    if shutil.which("wrk"):
        return
    log("  installing wrk with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [*sudo, "apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(cmd, env=env, check=False).returncode:  # noqa: S603
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False)  # noqa: S603
        subprocess.run(cmd, env=env, check=True)  # noqa: S603
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing and could not be installed")


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _spawn(name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int,
           results: Path) -> Server:
    if not port_free(port):
        raise RuntimeError(f"port {port} is busy; set PORT_BASE to another range")
    log_path = results / f"{name}.server.log"
    fh = log_path.open("ab")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,  # noqa: S603
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(name=name, port=port, proc=proc, log_path=log_path, _log=fh)


def start(cfg: Config, target: str, db: Database, extent: list[float]) -> Server:
    port = cfg.ports[target]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPG_", "PYGEOAPI_"))}
    if target == "twin":
        env["TWIN_DB_NAME"] = cfg.db_name
        env["PYTHONPATH"] = str(cfg.repo)
        argv = [str(python_of(cfg, "twin")), "-c", TWIN_MAIN, str(port)]
        return _spawn(target, argv, env, cfg.repo, port, cfg.results)
    run_dir = cfg.work / f"run-{target}"  # working directory (tipg reads a .env there)
    run_dir.mkdir(parents=True, exist_ok=True)
    if target == "tipg":
        env.update(DATABASE_URL=tipg_url(db), TIPG_DB_SCHEMAS='["bench"]',
                   TIPG_MAX_FEATURES_PER_QUERY="10000")
        argv = [str(cfg.work / "venv-tipg" / "bin" / "uvicorn"), "tipg.main:app",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--no-access-log", "--log-level", "warning"]
        return _spawn(target, argv, env, run_dir, port, cfg.results)
    if target == "pygeoapi":
        config = run_dir / "config.yml"
        openapi = run_dir / "openapi.yml"
        config.write_text(pygeoapi_config(port, db, extent))
        env.update(PYGEOAPI_CONFIG=str(config), PYGEOAPI_OPENAPI=str(openapi))
        venv_bin = cfg.work / "venv-pygeoapi" / "bin"
        done = subprocess.run([str(venv_bin / "pygeoapi"), "openapi", "generate", str(config),  # noqa: S603
                               "--output-file", str(openapi)], cwd=run_dir, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"pygeoapi openapi generate failed: {done.stderr[-800:]}")
        argv = [str(venv_bin / "gunicorn"), "--workers", "1", "--bind", f"127.0.0.1:{port}",
                "--timeout", "120", "--log-level", "warning", "pygeoapi.flask_app:APP"]
        return _spawn(target, argv, env, run_dir, port, cfg.results)
    raise ValueError(target)


def pygeoapi_config(port: int, db: Database, extent: list[float]) -> str:
    """pygeoapi's YAML (JSON is YAML): one collection, PostgreSQL provider over the socket."""
    url = f"http://127.0.0.1:{port}"
    doc: dict[str, Any] = {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": url,
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8",
                   "gzip": False, "languages": ["en-US"], "cors": False, "pretty_print": False,
                   "limits": {"default_items": 10, "max_items": 10000},
                   "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                           "attribution": "OpenStreetMap"}},
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "Twin bench", "description": "bench.buildings",
                               "keywords": ["bench"], "keywords_type": "theme",
                               "terms_of_service": "https://example.org", "url": url},
            "license": {"name": "CC-BY 4.0",
                        "url": "https://creativecommons.org/licenses/by/4.0/"},
            "provider": {"name": "Twin bench", "url": url},
            "contact": {"name": "bench", "position": "bench", "address": "-", "city": "Shanghai",
                        "stateorprovince": "Shanghai", "postalcode": "200000", "country": "CN",
                        "phone": "+86", "fax": "+86", "email": "bench@example.org", "url": url,
                        "hours": "-", "instructions": "-", "role": "pointOfContact"}},
        "resources": {"buildings": {
            "type": "collection", "title": "buildings", "description": "bench.buildings",
            "keywords": ["buildings"],
            "extents": {"spatial": {"bbox": extent,
                                    "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [{"type": "feature", "name": "PostgreSQL",
                           "data": {"host": db.host, "port": db.port, "dbname": db.dbname,
                                    "user": db.user, "password": db.password,
                                    "search_path": ["bench"]},
                           "id_field": "id", "table": "buildings", "geom_field": "geom"}]}},
    }
    return json.dumps(doc, indent=1) + "\n"


def http(method: str, url: str, headers: dict[str, str] | None = None,
         data: bytes | None = None, timeout: float = 60.0) -> tuple[int, str, bytes, float]:
    """(status, content type, body, seconds); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 (loopback only)
                                 headers={"Accept-Encoding": "identity", **(headers or {})})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
            body = r.read()
            return r.status, r.headers.get("Content-Type", ""), body, time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, e.headers.get("Content-Type", ""), body, time.perf_counter() - t0


def wait_ready(server: Server, path: str, timeout: float = 90.0) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}); "
                               f"see {server.log_path}")
        try:
            status, _, _, _ = http("GET", server.base + path, server.headers, timeout=5)
            if status < 500:
                return round(time.time() - t0, 1)
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s; see {server.log_path}")


def twin_token(cfg: Config, server: Server) -> str:
    form = urllib.parse.urlencode({"username": cfg.twin_user,
                                   "password": cfg.twin_password}).encode()
    status, _, body, _ = http("POST", server.base + "/auth/token",
                              {"Content-Type": "application/x-www-form-urlencoded"}, form)
    if status != 200:
        raise RuntimeError(f"Twin refused the demo login {cfg.twin_user!r}: "
                           f"{status} {body[:200]!r}")
    token: str = json.loads(body)["access_token"]
    return token


def stop(server: Server, log: Log) -> None:
    """SIGTERM the server we started (and whatever it forked), SIGKILL after 15 s."""
    procs = read_procs()
    tree = descendants(procs, server.pid) - {server.pid}
    keys = {k for k in procs if k[0] in tree}  # (pid, start time): never a reused pid
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)
    for pid, _ in keys & read_procs().keys():  # children that outlived their parent
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if server._log:
        server._log.close()
    log(f"  {server.name}: stopped (pid {server.pid})")
