"""Faults under load, the short pass: a few tablets edit (with photos), report and move cases
over a link that drops 20 % while PostgreSQL restarts (fast) and the server (`twin serve
--workers 2`) is killed with SIGKILL and started again, on a scratch cluster of the test's
own (bench/chaos.py, whose long pass is `make chaos`). Nothing may be lost or applied twice,
every answer must be a clean 503 or a refused connection while the server is down, /ready
must come back by itself, and the live feeds must deliver every change once."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import Plan, run
from bench.soak import Knobs

# A short day that outlasts both faults; the recovery bound only keeps a broken service
# from holding the test for ever (how fast it recovers is `make chaos`'s to measure).
PLAN = Plan(Knobs(tablets=3, supervisors=1, edits=20, cases=1, case_poll=2.0, photos=0.1,
                  timeout=30.0),
            ("pg-fast", "kill"), workers=2, gap=5.0, recovery=90.0)


def test_nothing_is_lost_when_postgresql_restarts_and_the_server_is_killed(
        tmp_path: Path) -> None:
    report = run(PLAN, tmp_path, log=lambda line: None)
    assert not report.failures, report.summary()
    figures = report.figures
    assert [f["fault"] for f in report.faults] == ["pg-fast", "kill"]
    assert all(f["under_load"] and f["ready_again_s"] is not None for f in report.faults)
    assert figures["lost"] == figures["applied twice"] == figures["hangs"] == 0
    assert figures["edits sent"] == (figures["applied once"] + figures["conflicts"]
                                     + figures["rejected with a reason"])
    # the faults were felt: the database's absence answered 503, the server's refused
    assert report.faults[0]["answers_503"] + report.faults[0]["cut"] > 0
    assert report.faults[1]["refused"] > 0
    assert figures["changes in the log"] > 0
