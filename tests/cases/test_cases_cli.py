"""`twin cases` and `twin report --cases` as an admin or a script runs them."""

from __future__ import annotations

import json

from tests.cases.steps import a_place, report
from tests.conftest import Database, run_twin


def test_rules_cases_and_report_from_the_command_line(sample_db: Database) -> None:
    env = sample_db.env() | {"COLUMNS": "200"}
    shown = run_twin("cases", "rules", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "暴露垃圾" in shown.stdout and "20d" in shown.stdout
    before = sample_db.scalar("SELECT count(*) FROM twin.rule_changes")
    again = run_twin("cases", "rules", "load", env=env)
    assert again.returncode == 0, again.stderr
    assert "27 categories" in again.stdout
    assert sample_db.scalar("SELECT count(*) FROM twin.rule_changes") == before  # unchanged

    lon, lat, grid = a_place(sample_db)
    case_id = report(sample_db, None, lon, lat)
    moved = run_twin("cases", "move", str(case_id), "filed", "--as", "dispatcher", env=env)
    assert moved.returncode == 0, moved.stderr
    assert "filed (version 2)" in moved.stdout
    refused = run_twin("cases", "move", str(case_id), "closed", "--as", "dispatcher", env=env)
    assert refused.returncode != 0 and "allowed" in refused.stderr
    assert "Traceback" not in refused.stderr
    nobody = run_twin("cases", "move", str(case_id), "dispatched", "--as", "nobody", env=env)
    assert nobody.returncode != 0 and "no active user" in nobody.stderr
    listed = run_twin("cases", "list", "--json", env=env)
    assert json.loads(listed.stdout)["features"][0]["properties"]["assignee"] == \
        f"worker-{grid}"

    figures = run_twin("report", "--cases", "--from", "2026-01-01", "--to", "2027-01-01",
                       "--by", "department", "--json", env=env)
    assert figures.returncode == 0, figures.stderr
    answer = json.loads(figures.stdout)
    assert answer["total"]["filed"] == 1 and answer["groups"][0]["key"] == "sanitation"
    table = run_twin("report", "--cases", "--from", "2026-01-01", "--to", "2027-01-01",
                     env=env)
    assert "结案率 = 结案数 / 应结案数" in table.stdout
    bad = run_twin("report", "--cases", "--from", "2026-01-01", "--to", "2027-01-01",
                   "--by", "colour", env=env)
    assert bad.returncode != 0 and "one of grid" in bad.stderr
