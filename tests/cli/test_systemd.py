"""`twin systemd`: the units that run the twin at boot and start the server again when it dies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import Database, run_twin


def test_units_start_the_cluster_then_the_server_and_restart_it(db: Database,
                                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in db.env().items() if k != "TWIN_DATABASE_URL"}
    done = run_twin("systemd", "--workers", "3", "--out", str(tmp_path),
                    env={**env, "TWIN_DB_NAME": "mytwin", "TWIN_DEMO_PASSWORD": "secret"})
    assert done.returncode == 0, done.stderr
    server = (tmp_path / "twin.service").read_text(encoding="utf-8")
    cluster = (tmp_path / "twin-db.service").read_text(encoding="utf-8")
    twin = Path(sys.executable).parent / "twin"  # the command run_twin ran
    assert f"ExecStart={twin} serve --workers 3" in server
    assert "Restart=always" in server and "Requires=twin-db.service" in server
    assert f"ExecStart={twin} db start" in cluster and f"ExecStop={twin} db stop" in cluster
    assert "Environment=TWIN_DB_NAME=mytwin" in server
    assert "secret" not in server + cluster  # passwords stay in /etc/twin/twin.env
    own = run_twin("systemd", env=db.env())  # a database of one's own: no cluster to start
    assert own.returncode == 0 and "twin-db.service" not in own.stdout
    assert "After=network-online.target" in own.stdout
    if shutil.which("systemd-analyze"):  # systemd's own reading of them, where it is installed
        checked = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "twin.service"),
                                  str(tmp_path / "twin-db.service")], capture_output=True,
                                 text=True, check=False)
        assert checked.returncode == 0, checked.stderr
