"""The README's first ten minutes, walked as a new user would: the sample loaded by `twin
sample` as `make run` loads it, the server up, then every command of that section run by
bash, in the order written, against it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Database, run_twin, serve
from twin.settings import Settings

README = ROOT / "README.md"
PASSWORD = "twin-demo"  # the README's: the demo password when none is set


def first_ten_minutes() -> str:
    """The shell blocks of the README's section "The first ten minutes", in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## The first ten minutes", 1)[1].split("\n## ", 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, flags=re.S))


@pytest.fixture
def fresh(db: Database) -> Iterator[tuple[Database, str]]:
    """The default sample, loaded by its owner as `make run` does, served on a free port."""
    loaded = run_twin("sample", "--cases", "100", "--orders", "30", env={
        **db.env(), "TWIN_DATABASE_URL": db.admin_url, "TWIN_DEMO_PASSWORD": PASSWORD})
    assert loaded.returncode == 0, loaded.stderr
    with serve(Settings(database_url=db.app_url, demo_password=PASSWORD)) as url:
        yield db, url


def _json_at(out: str, start: str) -> dict[str, Any]:
    """The last JSON object in ``out`` that begins with ``start``."""
    value, _end = json.JSONDecoder().raw_decode(out, out.rindex(start))
    assert isinstance(value, dict)
    return value


def test_the_first_ten_minutes_work_in_the_order_written(fresh: tuple[Database, str]) -> None:
    db, url = fresh
    script = first_ten_minutes()
    assert "twin stats" in script and "PATCH" in script and "twin coverage" in script
    # the pages the section sends people to answer
    for page in ("/field", "/dashboard", "/map", "/api.html", "/"):
        assert f"http://127.0.0.1:8000{page}" in README.read_text(encoding="utf-8")
        assert httpx.get(f"{url}{page}").status_code == 200, page
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8000", url)],
        cwd=ROOT, env={**db.env(), "TWIN_DEMO_PASSWORD": PASSWORD}, capture_output=True,
        text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "waste_points" in out and "content hash" in out  # twin stats
    # the worker's points, the edit, its history (curl's answers, one after the other)
    points = _json_at(out, '{"type":"FeatureCollection"')
    assert 5024 in [f["id"] for f in points["features"]] and len(points["features"]) >= 2
    edited = _json_at(out, '{"type":"Feature","id":5024')
    assert edited["properties"]["state"] == "full" and edited["properties"]["version"] == 2
    history = _json_at(out, '{"layer" : "waste_points"')
    assert [v["version"] for v in history["versions"]] == [2, 1]
    # the planner's question and the report
    assert "居民区 residential area" in out and "合计 total" in out
    assert "变更报告 Changes" in out
    # stopping: the command the section names exists
    assert run_twin("db", "--help", env=db.env()).stdout.count("stop") >= 1
