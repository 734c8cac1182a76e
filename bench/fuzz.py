"""The API fuzzed: schemathesis sends every operation of the OpenAPI document (``GET /api``)
requests it generates from the document (valid ones, invalid ones, and valid ones naming
what the twin holds), each with the token of every role of the sample twin and with none, and
judges every answer.

    .venv/bin/python -m bench.fuzz            # or: make fuzz
    FUZZ_EXAMPLES=10 .venv/bin/python -m bench.fuzz

Why: every endpoint must answer bad input with a 4xx naming the problem, never a 500, and the
document must tell clients the truth; the unit tests show the cases someone thought of, this
sends the ones nobody did. Each answer is checked by schemathesis (``CONFIG``: not a server
error, a status the operation declares, a content type and body its schema allows) and by
the twin itself: a request answered anything but 2xx must leave it as it was (``LEDGER``, read
before and after every request; a refused edit is still kept in ``twin.edits`` as rejected,
as designed, so only the edits that took count).

``tests/api/test_fuzz.py`` is the short pass (a few examples, in ``make test``); this module
is the long one (``FUZZ_EXAMPLES`` requests per operation and mode, default 25, each sent as
every role), outside it.
Generation is derandomized: the same twin and examples send the same requests. The database
``twin_fuzz`` is made once in Twin's own cluster with ``twin sample`` (the sample with its
cases and orders) and kept as the template of every run, which fuzzes a copy,
``twin_fuzz_run`` (dropped at the end unless ``FUZZ_KEEP=1``). The server's log (5xx
tracebacks) goes to ``.twin/bench/fuzz/<stamp>.log``, the counts and failures to
``<stamp>.json``. Exit status 1 when anything failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup

from bench.hotline import drop_database, prepare_copy
from bench.twin_server import serve_twin
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".twin" / "bench" / "fuzz"

# Who sends: a user of each role of the sample twin, and nobody (no token). The worker is
# the grid worker (worker-<grid code>, not a squad's lead) whose micro-grid holds the most
# waste points, so that edits of theirs can take; the others the first of their role by name
# (the department dept-<code>).
ROLES = ("worker", "planner", "commander", "dispatcher", "department", "admin")
USERS_SQL = """
SELECT u.role, (array_agg(u.name ORDER BY (SELECT count(*) FROM twin.user_grids g
                JOIN twin.features f ON f.grid_code = g.grid_code AND f.layer = 'waste_points'
                WHERE g.user_id = u.id) DESC, u.name))[1]
FROM twin.users u
WHERE u.active AND u.role = ANY(%(roles)s) AND (u.role <> 'worker' OR u.name LIKE 'worker-%%')
GROUP BY u.role
"""
# Valid requests, invalid ones, and valid ones whose path names what the twin holds (THINGS):
# a random id only meets a 404, so the routes' own checks are reached through real ones.
MODES = ("positive", "negative", "real")
THINGS = {
    "layer": "SELECT name FROM twin.layers",
    "name": "SELECT name FROM twin.layers",
    "fid": "SELECT id FROM twin.features ORDER BY md5(id::text) LIMIT 40",
    "building_id": "SELECT id FROM twin.features_buildings ORDER BY md5(id::text) LIMIT 20",
    "case_id": "SELECT id FROM twin.cases ORDER BY md5(id::text) LIMIT 20",
    "order_id": "SELECT id FROM twin.orders ORDER BY md5(id::text) LIMIT 20",
    "request_id": "SELECT id FROM twin.orders ORDER BY md5(id::text) LIMIT 20",
    "change_id": "SELECT id FROM twin.changes ORDER BY md5(id::text) LIMIT 20",
    "conflict_id": "SELECT id FROM twin.edits WHERE status = 'conflict' LIMIT 20",
    "import_id": "SELECT id FROM twin.imports LIMIT 20",
    "sha256": "SELECT sha256 FROM twin.photos LIMIT 20",
    "code": "SELECT code FROM twin.case_categories",
    # the tiles over the twin's centre at zoom 12 to 17
    "zxy": "SELECT z, floor((ST_X(c) + 180) / 360 * 2 ^ z)::int, floor((1 - ln(tan(radians("
           "ST_Y(c))) + 1 / cos(radians(ST_Y(c)))) / pi()) / 2 * 2 ^ z)::int "
           "FROM (SELECT ST_Centroid(ST_Extent(geom)) AS c FROM twin.features_micro_grids) t, "
           "generate_series(12, 17) AS z",
}

# What schemathesis judges: the house's rules (no 5xx; the document tells the truth).
CONFIG = schemathesis.Config.from_dict({
    "checks": {"enabled": False, "not_a_server_error": {"enabled": True},
               "status_code_conformance": {"enabled": True},
               "content_type_conformance": {"enabled": True},
               "response_schema_conformance": {"enabled": True}},
    "request-timeout": 60, "max-stream-events": 3,
    # the change feed's stream never ends: what it sends in half a second is its answer
    "operations": [{"include-path": "/changes/stream", "request-timeout": 0.5}]})

# What a request may change, each read in O(1) from an index (or a tiny table): the
# append-only logs every write leaves a row in (a feature's change, a case's or an order's
# step, a rule's change, a caller's contact read), the edits that took, the imports, photos,
# layers, tokens and the tablets' outbox reports.
LEDGER = """
SELECT (SELECT max(id) FROM twin.changes) AS changes,
       (SELECT max(id) FROM twin.case_events) AS case_events,
       (SELECT max(id) FROM twin.order_events) AS order_events,
       (SELECT max(id) FROM twin.rule_changes) AS rule_changes,
       (SELECT max(id) FROM twin.contact_log) AS contact_log,
       (SELECT max(id) FROM twin.edits WHERE status IN ('applied', 'merged', 'conflict'))
           AS edits_taken,
       (SELECT max(id) FROM twin.imports) AS imports,
       (SELECT count(*) FROM twin.photos) AS photos,
       (SELECT count(*) FROM twin.layer_specs) AS layer_specs,
       (SELECT count(*) FROM twin.tokens) AS tokens,
       (SELECT count(revoked_at) FROM twin.tokens) AS tokens_revoked,
       (SELECT max(reported_at) FROM twin.device_outboxes) AS outbox_reports
"""


@dataclass
class Report:
    """What a pass sent and found: operations, requests by status class, failures (each
    kind once per operation, with how often and one request that showed it)."""

    operations: set[str] = field(default_factory=set)
    requests: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def fail(self, operation: str, kind: str, detail: str) -> None:
        self.failures.setdefault((operation, kind), []).append(detail)

    def as_dict(self) -> dict[str, Any]:
        return {"operations": len(self.operations), "requests": sum(self.requests.values()),
                "by_status": dict(sorted(self.requests.items())),
                "by_operation": {op: dict(sorted(seen.items()))
                                 for op, seen in sorted(self.statuses.items())},
                "failures": [{"operation": op, "kind": kind, "count": len(details),
                              "first": details[0]}
                             for (op, kind), details in sorted(self.failures.items())],
                "skipped": self.skipped}

    def summary(self) -> str:
        by = ", ".join(f"{k} {v:,}" for k, v in sorted(self.requests.items()))
        lines = [f"{len(self.operations)} operations, {sum(self.requests.values()):,} requests "
                 f"({by}), {len(self.failures)} failures"]
        lines += [f"  {op}: {kind} x{len(details)}\n    {details[0]}"
                  for (op, kind), details in sorted(self.failures.items())]
        if self.skipped:  # a document that lets any value through leaves nothing invalid
            lines.append(f"  {len(self.skipped)} operations and modes had nothing to generate")
        return "\n".join(lines)


class Fuzzer:
    """One pass over ``base_url``'s document: every operation, each of ``MODES``,
    ``examples`` requests each, every one sent as each role of ``ROLES`` and with no token;
    the twin's ledger read through ``ledger`` (a conninfo of a role that reads every table)."""

    def __init__(self, base_url: str, ledger: str, password: str, examples: int,
                 log: Callable[[str], None] = print) -> None:
        self.base_url = base_url
        self.password = password
        self.examples = examples
        self.log = log
        self.session = requests.Session()
        self.db = psycopg.connect(ledger, autocommit=True)
        self.schema = schemathesis.openapi.from_url(f"{base_url}/api", config=CONFIG)
        found = dict(self.db.execute(USERS_SQL, {"roles": list(ROLES)}).fetchall())
        self.users: dict[str, str | None] = {role: found[role] for role in ROLES}
        self.users["anonymous"] = None
        self.tokens = {role: self._sign_in(name) for role, name in self.users.items()}
        self.things = {name: self.db.execute(sql).fetchall() for name, sql in THINGS.items()}
        self.report = Report()

    def _sign_in(self, user: str | None) -> str | None:
        if user is None:
            return None
        answer = self.session.post(f"{self.base_url}/auth/token",
                                   data={"username": user, "password": self.password})
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def _ledger(self) -> Mapping[str, Any]:
        cursor = self.db.execute(LEDGER)
        names = [c.name for c in cursor.description or ()]
        return dict(zip(names, cursor.fetchone() or (), strict=True))

    def run(self) -> Report:
        """Each request generated is sent once as every role: the same inputs meet every
        role's rights."""
        for result in self.schema.get_all_operations():
            operation = result.ok()
            started = time.perf_counter()
            sent = sum(self.report.requests.values())
            self.report.operations.add(operation.label)
            for mode in MODES:
                self._fuzz(operation, mode)
            self.log(f"{operation.label}: {sum(self.report.requests.values()) - sent:,} "
                     f"requests in {time.perf_counter() - started:.1f} s, "
                     f"{len(self.report.failures)} failures so far")
        self.db.close()
        return self.report

    def _strategy(self, operation: Any, mode: str) -> st.SearchStrategy[Any] | None:
        """The cases of ``mode``; None when the twin has nothing to name in the path."""
        if mode != "real":
            return operation.as_strategy(generation_mode=GenerationMode(mode))
        names = {p.name for p in operation.path_parameters}
        choices = {name: st.sampled_from([row[0] for row in self.things[name]])
                   for name in names if self.things.get(name)}
        if {"z", "x", "y"} <= names:
            choices["zxy"] = st.sampled_from(self.things["zxy"])
        if not choices:
            return None
        return st.fixed_dictionaries(choices).flatmap(lambda given: operation.as_strategy(
            path_parameters=_path(given)))

    def _fuzz(self, operation: Any, mode: str) -> None:
        strategy = self._strategy(operation, mode)
        if strategy is None:
            return

        @hypothesis.settings(max_examples=self.examples, derandomize=True, database=None,
                             deadline=None, phases=[Phase.explicit, Phase.generate],
                             suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=strategy)
        def send(case: schemathesis.Case) -> None:
            for role in self.users:
                self._send(role, case)

        try:
            send()
        except hypothesis.errors.Unsatisfiable:
            self.report.skipped.append(f"{operation.label} {mode}: nothing to generate")

    def _send(self, role: str, case: schemathesis.Case) -> None:
        token = self.tokens[role]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        label = case.operation.label
        before = self._ledger()
        try:
            response = case.call(base_url=self.base_url, session=self.session, headers=headers)
        except requests.RequestException as exc:
            self.report.requests["no answer"] += 1
            self.report.fail(label, "no answer", f"{role}: {exc}\n{case.as_curl_command()}")
            return
        self.report.requests[f"{response.status_code // 100}xx"] += 1
        self.report.statuses.setdefault(label, Counter())[response.status_code] += 1
        try:
            case.validate_response(response, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                self.report.fail(label, failure.title,
                                 f"{role} got {response.status_code}: {failure.message[:500]}"
                                 f"\n{case.as_curl_command()}")
        after = self._ledger()
        if not 200 <= response.status_code < 300:
            moved = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            if moved:
                self.report.fail(label, "refused but changed the twin",
                                 f"{role} got {response.status_code}; {moved}\n"
                                 f"{case.as_curl_command()}")
        elif label == "POST /auth/logout":
            self.tokens[role] = self._sign_in(self.users[role])  # that token is revoked now


def _path(given: dict[str, Any]) -> dict[str, Any]:
    """Path parameters from THINGS' rows (a tile's z, x and y come together)."""
    path = {name: value for name, value in given.items() if name != "zxy"}
    if "zxy" in given:
        path |= dict(zip("zxy", given["zxy"], strict=True))
    return path


def main() -> int:
    """Make the template once, fuzz a copy of it over HTTP, print and keep the counts."""
    base = os.environ.get("FUZZ_DB", "twin_fuzz")
    run_db = f"{base}_run"
    examples = int(os.environ.get("FUZZ_EXAMPLES", "25"))
    prepare_copy(base, run_db)
    keep = os.environ.get("FUZZ_KEEP") == "1"
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log = OUT / f"{stamp}.log"
    settings = Settings(db_name=run_db)
    server, url = serve_twin({**os.environ, "TWIN_DB_NAME": run_db}, log)
    started = time.perf_counter()
    try:
        report = Fuzzer(url, libpq_conninfo(database_urls(settings).admin),
                        settings.demo_password, examples, partial(print, flush=True)).run()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not keep:
            drop_database(run_db)
    print(f"\n{examples} examples per operation and mode, each sent as every role, in "
          f"{time.perf_counter() - started:.0f} s: {report.summary()}\nserver log: {log}")
    (OUT / f"{stamp}.json").write_text(json.dumps(
        {"db": run_db, "examples": examples, **report.as_dict()}, indent=2, default=str))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
