"""Faults under load: the soak's tablets (``bench/soak.py``: edits with photos, case reports
and moves, the dispatcher, over a link that loses 20 % of requests and of answers) work
against a real ``twin serve --workers N`` on a scratch cluster while, one after another,
PostgreSQL restarts (``pg_ctl -m fast``, then ``-m immediate``: a crash), the server is
killed (SIGKILL) and started again as systemd would, twice, and the photo store's disk fills
up; then the soak's audit, and this one's.

    .venv/bin/python -m bench.chaos                                       # make chaos
    CHAOS_FAULTS=pg-fast,kill SOAK_TABLETS=4 .venv/bin/python -m bench.chaos

Why: nothing may be lost, nor applied twice, when the parts under the service break, and the
service must come back by itself. The soak shows it for a link that drops; this shows it for
a database that restarts or crashes, a server process that dies, a full disk.

Judged, beyond the soak's audit (every edit a tablet made is in the log once, or held as a
conflict, or rejected with a reason; every case step once; every photo taken stored):
- every answer is a clean one: a 503 with ``Retry-After`` while the database is away, a
  refused or cut connection only while the server is down, never another 5xx, and never a
  hang (no answer within the client's timeout, SOAK_TIMEOUT);
- the service recovers by itself: ``/ready`` is 200 again within CHAOS_RECOVERY seconds of
  each fault's end (PostgreSQL back, the server started again, the disk freed), with no
  other step taken;
- the live feeds catch up: a ``/changes/stream`` client (reconnecting with ``Last-Event-ID``,
  as a browser's EventSource does) and the live map's poll of ``/changes`` (every 3 s from its
  cursor, as ``twin/static/map/live.js`` does) each deliver every change of the run, once.

The scratch cluster (``twin.store.cluster.Cluster`` in a temp folder, with its own socket) is
made afresh with ``twin db migrate`` and ``twin sample`` and removed at the end
(CHAOS_KEEP=1 keeps it, stopped); Twin's own cluster is never touched. The photo store's disk
is a tmpfs of its own holding ``twin.photos`` (a tablespace), so only the disk fault needs
root. Results: ``.twin/bench/chaos/<stamp>.json``, the server's and PostgreSQL's logs beside
it. Exit status 1 when any check failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from bench.soak import Dispatcher, Knobs, Tablet, accounts, audit, audit_cases, run_day, tally
from twin.settings import Settings
from twin.store.cluster import Cluster, local_cluster
from twin.store.db import libpq_conninfo, make_engine
from twin.users import User, issue_token

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
OUT = ROOT / ".twin" / "bench" / "chaos"
DB = "twin_chaos"
FAULTS = ("pg-fast", "pg-immediate", "kill", "disk")
RESTART_S = 2.0  # twin.service's RestartSec (twin systemd): a dead server is started again
POLL_S = 3.0  # the live map's look at /changes
STREAM_RETRY_S = 2.0  # the stream's own "retry:"
STREAM_SILENCE_S = 40.0  # a stream says something every 15 s at most (its heartbeat)
READY_EVERY_S = 0.25
DISK_MB = 256  # far more than a run's photos: only the ballast fills it
# The long run (make chaos): long enough a day for every fault to fall in it, with gaps
LONG = Knobs(tablets=40, edits=120, think=1.5, photos=0.1, timeout=30.0)


@dataclass(frozen=True)
class Plan:
    """One run: the soak's workload, the faults in order (each after ``gap`` seconds of
    load), the server's processes, how soon /ready must be back, how long the disk is full."""

    knobs: Knobs
    faults: tuple[str, ...]
    workers: int = 2
    gap: float = 15.0
    recovery: float = 90.0
    disk_s: float = 10.0

    @classmethod
    def from_env(cls) -> Plan:
        faults = tuple(os.environ.get("CHAOS_FAULTS", "pg-fast,kill,disk,pg-immediate,kill")
                       .split(","))
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise SystemExit(f"CHAOS_FAULTS: {', '.join(sorted(unknown))}: not one of "
                             f"{', '.join(FAULTS)}")
        return cls(Knobs.from_env(**asdict(LONG)), faults,
            int(os.environ.get("CHAOS_WORKERS", "2")),
            float(os.environ.get("CHAOS_GAP", "15")),
            float(os.environ.get("CHAOS_RECOVERY", "90")),
            float(os.environ.get("CHAOS_DISK_S", "10")))


# ---------------------------------------------------------------------------------------
# What every client heard

@dataclass(frozen=True)
class Heard:
    """One request that reached the server (or tried to): who sent it, when it left and
    ended (time.monotonic()), and what came of it: ok (any answer below 500), 503 (with
    Retry-After), 5xx (any other), refused, cut (the connection broke), hang (timeout)."""

    source: str
    method: str
    path: str
    sent: float
    at: float
    kind: str
    detail: str = ""


class Ears:
    """Everything every client heard, in order."""

    def __init__(self) -> None:
        self.heard: list[Heard] = []

    def __call__(self, source: str, method: str, path: str, sent: float,
                 outcome: httpx.Response | httpx.TransportError) -> None:
        at = time.monotonic()
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            kind = ("ok" if status < 500 else
                    "503" if status == 503 and outcome.headers.get("retry-after") else "5xx")
            # a streamed answer's body is not read here: only whether it began well matters
            detail = "" if kind == "ok" or not outcome.is_closed else \
                f"{status} {outcome.text[:300]}"
        else:
            kind = ("refused" if isinstance(outcome, httpx.ConnectError) else
                    "hang" if isinstance(outcome, httpx.TimeoutException) else "cut")
            detail = repr(outcome)[:300]
        self.heard.append(Heard(source, method, path.partition("?")[0], sent, at, kind,
                                detail))

    def of(self, source: str) -> Callable[[str, str, float, Any], None]:
        return lambda method, path, sent, outcome: self(source, method, path, sent, outcome)


# ---------------------------------------------------------------------------------------
# The parts: a scratch cluster, the server, the photo store's disk

@dataclass
class Scratch:
    """A twin in a cluster of its own, in a temp folder, and the environment that points
    `twin` at it; ``disk`` is the photo store's own small disk, when mounted."""

    base: Path
    cluster: Cluster
    env: dict[str, str]
    disk: Path | None = None

    @property
    def conninfo(self) -> str:
        return libpq_conninfo(self.cluster.admin_url)

    def twin(self, *args: str) -> None:
        subprocess.run([str(TWIN), *args], env=self.env, cwd=ROOT, check=True,  # noqa: S603
                       stdout=subprocess.DEVNULL)

    def restart(self, mode: str) -> None:
        """pg_ctl restart: ``fast`` ends every session cleanly, ``immediate`` is a crash
        (the start after it replays the WAL); it returns once PostgreSQL accepts
        connections again, with the options it was started with."""
        subprocess.run(self.cluster.as_owner([  # noqa: S603
            str(self.cluster.bindir / "pg_ctl"), "-D", str(self.cluster.pgdata), "-l",
            str(self.cluster.logfile), "-m", mode, "-w", "-t", "120", "restart"]),
            check=True, capture_output=True)


@contextlib.contextmanager
def scratch_twin(disk: bool, log: Callable[[str], None]) -> Iterator[Scratch]:
    """The sample twin (without its half year of cases and orders) in a new cluster; with
    ``disk``, ``twin.photos`` on a tmpfs of DISK_MB of its own (mounting needs root)."""
    if disk and os.geteuid() != 0:
        raise SystemExit("the disk fault mounts a tmpfs for the photo store: run as root, or "
                         "leave disk out of CHAOS_FAULTS")
    base = Path(tempfile.mkdtemp(prefix="twin-chaos-"))
    base.chmod(0o755)  # the cluster's owner (postgres, when we are root) works in it
    cluster = local_cluster(Settings(database_url=None, data_dir=base, db_name=DB,
                                     db_port=5432))
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DATABASE_URL"} | {
        "TWIN_DATA_DIR": str(base), "TWIN_DB_NAME": DB, "TWIN_DB_PORT": "5432"}
    twin = Scratch(base, cluster, env)
    try:
        log(f"scratch cluster in {base}: twin db migrate, twin sample")
        cluster.start()
        twin.twin("db", "migrate")
        twin.twin("sample", "--if-empty", "--cases", "0", "--orders", "0")
        # as the soak's database: JIT compiles each call of twin.work_between (bench/README.md)
        cluster.psql(f'ALTER DATABASE "{DB}" SET jit = off')
        if disk:
            twin.disk = base / "photo-disk"
            twin.disk.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m",  # noqa: S603, S607
                            "tmpfs", str(twin.disk)], check=True)
            if cluster.run_as:
                shutil.chown(twin.disk, cluster.run_as, cluster.run_as)
            cluster.psql(f"CREATE TABLESPACE photo_disk LOCATION '{twin.disk}'")
            cluster.psql("ALTER TABLE twin.photos SET TABLESPACE photo_disk", dbname=DB)
        yield twin
    finally:
        cluster.stop()
        if twin.disk is not None:
            subprocess.run(["umount", str(twin.disk)], check=False)  # noqa: S603, S607
        if os.environ.get("CHAOS_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)


class Server:
    """``twin serve --workers N`` on a free port, its output appended to ``log``; after a
    kill it is started again as systemd's Restart=always would, until it stays up."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.env, self.workers, self.log = env, workers, log
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.groups: set[int] = set()  # every process group started, ended at the end
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                [str(TWIN), "serve", "--port", str(self.port), "--workers", str(self.workers)],
                env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.groups.add(self.process.pid)
        self.starts += 1

    async def answering(self, deadline: float) -> bool:
        """Wait until /health answers; start again (after RESTART_S) whenever it exits."""
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    await asyncio.sleep(RESTART_S)
                    self.start()
                    continue
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code == 200:
                        return True
                await asyncio.sleep(0.2)
        return False

    @property
    def group(self) -> int:
        assert self.process is not None
        return self.process.pid  # its own session: the group's id is its pid

    def kill(self) -> None:
        """SIGKILL to the server's process (uvicorn's supervisor with workers): no cleanup."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for group in self.groups:  # any process left behind by a killed server
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def _running(group: int) -> list[int]:
    """The processes of a process group still running (zombies aside)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state != "Z":
                found.append(int(stat.parent.name))
    return found


# ---------------------------------------------------------------------------------------
# Faults, and the clients that watch the service come back

@dataclass
class Fault:
    """One fault: when it began, when its cause was over (PostgreSQL back, the killed server
    started again, the disk freed), when /ready answered 200 again, and whether the
    tablets were still at work."""

    name: str
    began: float
    ended: float | None = None
    recovered: float | None = None
    loaded: bool = True
    starts: int = 0  # a kill: the starts it took to get the server up again
    group: int = 0  # a kill: the killed server's process group
    left: list[int] = field(default_factory=list)  # ... still running at the end of the day

    def covers(self, sent: float, at: float, slack: float = 1.0) -> bool:
        """Whether a request (sent, answered ``at``) was under way while the fault lasted,
        from its start until /ready was 200 again."""
        end = self.recovered or self.ended
        return at >= self.began - slack and (end is None or sent <= end + slack)


class Chaos:
    """The faults of a plan, one after another, while the day runs; /ready watched all
    along; the two live feeds followed."""

    def __init__(self, plan: Plan, twin: Scratch, server: Server, ears: Ears, token: str,
                 first_change: int, log: Callable[[str], None]) -> None:
        self.plan, self.twin, self.server, self.ears = plan, twin, server, ears
        self.token, self.log = token, log
        self.faults: list[Fault] = []
        self.ready: list[tuple[float, bool]] = []
        self.stream: list[tuple[int, float]] = []  # change ids as they came, and when
        self.mapped: list[tuple[int, float]] = []
        self.cursor = {"stream": first_change, "map": first_change}
        self.day_began = asyncio.Event()  # scopes loaded, plans made: the users at work
        self.day_over = asyncio.Event()
        self.done = asyncio.Event()

    def _client(self, timeout: httpx.Timeout | float) -> httpx.AsyncClient:
        # idle connections expire before uvicorn's 5 s keep-alive closes them (as the soak's)
        return httpx.AsyncClient(base_url=self.server.url, timeout=timeout,
                                 limits=httpx.Limits(keepalive_expiry=4.0),
                                 headers={"Authorization": f"Bearer {self.token}"})

    async def faults_in_turn(self) -> None:
        """Each fault after ``gap`` seconds of the day, once the one before has recovered."""
        try:
            await self.day_began.wait()
            for name in self.plan.faults:
                await asyncio.sleep(self.plan.gap)
                fault = Fault(name, time.monotonic(), loaded=not self.day_over.is_set())
                self.faults.append(fault)
                self.log(f"fault: {name}")
                fault.ended = ended = await self._inflict(fault)
                fault.recovered = back = await self._recovered(ended)
                self.log(f"{name}: over after {ended - fault.began:.1f} s, ready "
                         + (f"{back - ended:.1f} s later" if back else "not again in time"))
        finally:
            self.done.set()

    async def _inflict(self, fault: Fault) -> float:
        """Do the fault, then end its cause: when it ended. A killed server's recovery
        includes its start (started again whenever it exits, as systemd would)."""
        if fault.name in ("pg-fast", "pg-immediate"):
            await asyncio.to_thread(self.twin.restart, fault.name.removeprefix("pg-"))
            return time.monotonic()
        if fault.name == "kill":
            before, fault.group = self.server.starts, self.server.group
            self.server.kill()
            await asyncio.sleep(RESTART_S)
            self.server.start()
            ended = time.monotonic()
            await self.server.answering(ended + self.plan.recovery)
            fault.starts = self.server.starts - before
            return ended
        await asyncio.to_thread(self._fill_disk)
        await asyncio.sleep(self.plan.disk_s)
        assert self.twin.disk is not None
        (self.twin.disk / "ballast").unlink()
        return time.monotonic()

    def _fill_disk(self) -> None:
        """Fill the photo store's disk to the last byte."""
        assert self.twin.disk is not None
        chunk = b"\0" * 2**20
        with (self.twin.disk / "ballast").open("wb", buffering=0) as ballast:
            try:
                while True:
                    ballast.write(chunk)
            except OSError:  # no space left: the point
                while True:
                    try:
                        ballast.write(b"\0" * 4096)
                    except OSError:
                        return

    async def _recovered(self, ended: float) -> float | None:
        """When /ready first answered 200 after ``ended`` (later than the plan's recovery
        time is a failure); None when it did not within three times that."""
        while True:
            back = next((t for t, ok in self.ready if ok and t >= ended), None)
            if back is not None or time.monotonic() > ended + 3 * self.plan.recovery:
                return back
            await asyncio.sleep(READY_EVERY_S)

    async def watch_ready(self) -> None:
        """/ready every quarter second, as a load balancer would, on a link that works."""
        async with httpx.AsyncClient(base_url=self.server.url, timeout=5,
                                     limits=httpx.Limits(keepalive_expiry=4.0)) as http:
            while not (self.done.is_set() and self.day_over.is_set()):
                sent = time.monotonic()
                try:
                    answer = await http.get("/ready")
                    self.ready.append((time.monotonic(), answer.status_code == 200))
                    self.ears("ready", "GET", "/ready", sent, answer)
                except httpx.TransportError as exc:
                    self.ready.append((time.monotonic(), False))
                    self.ears("ready", "GET", "/ready", sent, exc)
                await asyncio.sleep(READY_EVERY_S)

    async def follow_stream(self, stop: asyncio.Event) -> None:
        """GET /changes/stream as EventSource reads it: every event's id kept, and after a
        break the stream asked again with Last-Event-ID, ``retry`` seconds later."""
        timeout = httpx.Timeout(10.0, read=STREAM_SILENCE_S)
        async with self._client(timeout) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    async with http.stream("GET", "/changes/stream", headers={
                            "Last-Event-ID": str(self.cursor["stream"])}) as answer:
                        if answer.status_code != 200:
                            await answer.aread()
                            self.ears("stream", "GET", "/changes/stream", sent, answer)
                        else:
                            self.ears("stream", "GET", "/changes/stream", sent, answer)
                            await self._events(answer, stop)
                except httpx.TransportError as exc:
                    self.ears("stream", "GET", "/changes/stream", sent, exc)
                if not stop.is_set():
                    await asyncio.sleep(STREAM_RETRY_S)

    async def _events(self, answer: httpx.Response, stop: asyncio.Event) -> None:
        lines = answer.aiter_lines()
        while not stop.is_set():
            reading = asyncio.ensure_future(anext(lines))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait((reading, stopping), return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await reading
                return
            try:
                line = reading.result()
            except StopAsyncIteration:
                return  # the server ended it: ask again
            if line.startswith("id: "):
                change = int(line[4:])
                self.stream.append((change, time.monotonic()))
                self.cursor["stream"] = change

    async def follow_map(self, stop: asyncio.Event) -> None:
        """The live map's feed: every POLL_S seconds, /changes oldest first from its cursor,
        page after page (twin/static/map/live.js ``poll``)."""
        async with self._client(30.0) as http:
            while not stop.is_set():
                try:
                    while True:
                        sent = time.monotonic()
                        path = "/changes"
                        answer = await http.get(path, params={
                            "order": "oldest", "limit": "500",
                            "cursor": str(self.cursor["map"])})
                        self.ears("map", "GET", path, sent, answer)
                        if answer.status_code != 200:
                            break
                        page = answer.json()
                        for change in page["changes"]:
                            self.mapped.append((change["id"], time.monotonic()))
                            self.cursor["map"] = change["id"]
                        if not any(link["rel"] == "next" for link in page["links"]):
                            break
                except httpx.TransportError as exc:
                    self.ears("map", "GET", "/changes", sent, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)


# ---------------------------------------------------------------------------------------
# The run

@dataclass
class Report:
    """What a run found: the audit table's figures, the faults, and each failed check with
    its count (``failures`` is empty when all passed)."""

    figures: dict[str, Any]
    faults: list[dict[str, Any]]
    failures: dict[str, int]
    examples: dict[str, list[Any]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{k}: {v}" for k, v in self.figures.items()]
        lines += [json.dumps(f, default=str) for f in self.faults]
        lines += [f"FAILED {k}: {v} e.g. {json.dumps(self.examples.get(k, [])[:3], default=str)}"
                  for k, v in self.failures.items()]
        return "\n".join(lines)


def run(plan: Plan, out: Path, log: Callable[[str], None] = print) -> Report:
    """A scratch twin, a server, the day with its faults, the audits; the report and the
    logs go to ``out`` (``result.json``, ``server.log``, ``postgresql.log``)."""
    out.mkdir(parents=True, exist_ok=True)
    with scratch_twin("disk" in plan.faults, log) as twin:
        try:
            report = _run(plan, twin, out, log)
        finally:
            with contextlib.suppress(OSError):
                shutil.copy(twin.cluster.logfile, out / "postgresql.log")
    (out / "result.json").write_text(json.dumps(
        {"plan": asdict(plan), **asdict(report)}, indent=2, ensure_ascii=False, default=str))
    return report


def _run(plan: Plan, twin: Scratch, out: Path, log: Callable[[str], None]) -> Report:
    rng = random.Random(plan.knobs.seed)  # noqa: S311 (a repeatable run, not a secret)
    workers, supervisors, desk = accounts(twin.cluster.admin_url, plan.knobs, rng)
    with psycopg.connect(twin.conninfo) as conn:
        first = conn.execute("SELECT max(id) FROM twin.changes").fetchone()
        admin = conn.execute("SELECT id, name, role FROM twin.users WHERE name = 'admin'"
                             ).fetchone()
    assert first is not None and admin is not None
    engine = make_engine(twin.cluster.admin_url, pool_size=1)
    try:
        token = issue_token(engine, User(admin[0], admin[1], admin[2], ()), 720)[0]
    finally:
        engine.dispose()
    server = Server(twin.env, plan.workers, out / "server.log")
    ears = Ears()
    try:
        server.start()
        if not asyncio.run(server.answering(time.monotonic() + 120)):
            raise SystemExit(f"twin serve did not start: see {server.log}")
        log(f"{len(workers)} worker tablets and {len(supervisors)} supervisors', "
            f"{plan.knobs.edits} edits each, photos on {plan.knobs.photos:.0%}, "
            f"{plan.knobs.cases} case reports per worker and a dispatcher, drops "
            f"{plan.knobs.drop:.0%} each way; faults {', '.join(plan.faults)} every "
            f"{plan.gap:g} s; twin serve --workers {plan.workers} at {server.url}")
        chaos = Chaos(plan, twin, server, ears, token, int(first[0]), log)
        tablets, dispatcher, since, overlap, wall = asyncio.run(
            _day(chaos, workers, supervisors, desk, rng))
        log(f"the day is over ({wall:.0f} s); the audit")
        for fault in chaos.faults:  # workers serving on for a dead server
            fault.left = _running(fault.group) if fault.group else []
    finally:
        server.stop()
    figures, fail = audit(twin.conninfo, tablets)
    case_figures, case_fail = audit_cases(twin.conninfo, tablets, dispatcher, since)
    with psycopg.connect(twin.conninfo) as conn:
        logged = [r[0] for r in conn.execute(
            "SELECT id FROM twin.changes WHERE id > %s ORDER BY id", [int(first[0])])]
    # uvicorn's own: a worker that died, or missed its health check, started again
    restarted = server.log.read_text(errors="replace").count("] died")
    return _judge(chaos, ears, tablets, dispatcher, overlap, wall, logged, restarted,
                  (figures, fail), (case_figures, case_fail))


async def _day(chaos: Chaos, workers: list[tuple[User, str]],
               supervisors: list[tuple[User, str]], desk: tuple[User, str],
               rng: random.Random) -> tuple[list[Tablet], Dispatcher, str, Counter[str], float]:
    """The soak's day, with the faults, the /ready watch and the feeds beside it; after it
    (and the last fault), the feeds are given time to deliver the last change."""
    stop = asyncio.Event()
    beside = [asyncio.create_task(job) for job in (
        chaos.faults_in_turn(), chaos.watch_ready(), chaos.follow_stream(stop),
        chaos.follow_map(stop))]
    try:
        day = await run_day(chaos.server.url, workers, supervisors, desk, rng,
                            chaos.plan.knobs, chaos.ears.of("tablets"), chaos.day_began)
        chaos.day_over.set()
        await chaos.done.wait()
        await _caught_up(chaos)
    finally:
        chaos.day_over.set()
        stop.set()
        beside[0].cancel()
        await asyncio.gather(*beside, return_exceptions=True)
    return day


async def _caught_up(chaos: Chaos) -> None:
    """Until both feeds have the log's newest change, or the plan's recovery time passes."""
    conninfo = chaos.twin.conninfo
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        newest = (await (await conn.execute("SELECT max(id) FROM twin.changes")).fetchone()
                  or (0,))[0]
    deadline = time.monotonic() + chaos.plan.recovery + POLL_S
    while time.monotonic() < deadline and min(chaos.cursor.values()) < newest:
        await asyncio.sleep(0.2)


def _judge(chaos: Chaos, ears: Ears, tablets: list[Tablet],
           dispatcher: Dispatcher, overlap: Counter[str], wall: float, logged: list[int],
           restarted: int,
           edits: tuple[dict[str, Any], dict[str, list[Any]]],
           cases: tuple[dict[str, Any], dict[str, list[Any]]]) -> Report:
    """The soak's audit and the faults' checks, as figures and failures."""
    (figures, fail), (case_figures, case_fail) = edits, cases
    down = [f for f in chaos.faults if f.name == "kill"]
    failed: dict[str, list[Any]] = {k: [] for k in (
        "5xx other than a clean 503", "hang", "refused while the server ran",
        "cut while the server ran", "not ready again in time", "stream missed a change",
        "stream gave a change twice", "map missed a change", "map gave a change twice",
        "fault not under load", "workers outlived the killed server")}
    kinds: Counter[str] = Counter()
    for h in ears.heard:
        kinds[h.kind] += 1
        example = asdict(h) | {"edit": f"{h.source} {h.sent:.3f}"}
        if h.kind == "5xx":
            failed["5xx other than a clean 503"].append(example)
        elif h.kind == "hang":
            failed["hang"].append(example)
        elif h.kind == "refused" and not any(f.covers(h.sent, h.at) for f in down):
            failed["refused while the server ran"].append(example)
        elif h.kind == "cut" and not any(f.covers(h.sent, h.at) for f in (
                chaos.faults if h.source == "stream" else down)):
            failed["cut while the server ran"].append(example)
    kinds["503 outside faults"] = sum(1 for h in ears.heard if h.kind == "503" and not any(
        f.covers(h.sent, h.at) for f in chaos.faults))
    for fault in chaos.faults:
        if fault.recovered is None or fault.ended is None or (
                fault.recovered - fault.ended > chaos.plan.recovery):
            failed["not ready again in time"].append({"edit": fault.name, **asdict(fault)})
        if not fault.loaded:
            failed["fault not under load"].append({"edit": fault.name})
        if fault.left:
            failed["workers outlived the killed server"].append({"edit": fault.began,
                                                                  "pids": fault.left})
    for name, feed in (("stream", chaos.stream), ("map", chaos.mapped)):
        got = Counter(change for change, _ in feed)
        failed[f"{name} missed a change"] = [{"edit": c} for c in logged if c not in got]
        failed[f"{name} gave a change twice"] = [{"edit": c, "times": n}
                                                for c, n in got.items() if n > 1]
    soak = tally(fail | case_fail)
    cf = case_figures
    keys = [t for intent in dispatcher.intents for t in intent.tries]
    result = {
        "edits sent": sum(len(t.made) + len(t.case_made) for t in tablets) + len(keys),
        "applied once": figures.get("applied", 0) + figures.get("merged", 0)
        + cf.get("tablet reports applied", 0) + cf.get("tablet moves applied", 0)
        + sum(1 for k in keys if k.heard == 200),
        "conflicts": figures.get("conflict", 0) + cf.get("tablet moves conflict", 0),
        "rejected with a reason": figures.get("rejected", 0)
        + cf.get("tablet reports rejected", 0) + cf.get("tablet moves rejected", 0)
        + sum(1 for k in keys if k.heard not in (None, 200)),
        "lost": soak["lost"] + soak["case lost"] + soak["photo lost"],
        "applied twice": soak["logged twice or both"] + soak["case applied twice"]
        + soak["case refused yet in the events"] + soak["case edit_id twice in the events"],
        "photos taken / stored": f"{sum(len(t.photos) for t in tablets)} / "
                                 f"{sum(len(t.photos) - len(t.unsent) for t in tablets)}",
        "photo uploads refused 503": sum(1 for h in ears.heard
                                         if h.kind == "503" and h.path.startswith("/photos/")),
        "answers": sum(kinds[k] for k in ("ok", "503", "5xx")),
        "5xx (not a clean 503)": kinds["5xx"],
        "503 with Retry-After": kinds["503"],
        "503 outside faults": kinds["503 outside faults"],
        "refused / cut connections": f"{kinds['refused']} / {kinds['cut']}",
        "hangs": kinds["hang"],
        "changes in the log": len(logged),
        "stream: delivered / missed / twice": f"{len({c for c, _ in chaos.stream})} / "
        f"{len(failed['stream missed a change'])} / {len(failed['stream gave a change twice'])}",
        "map feed: delivered / missed / twice": f"{len({c for c, _ in chaos.mapped})} / "
        f"{len(failed['map missed a change'])} / {len(failed['map gave a change twice'])}",
        "tablets that gave up": overlap["tablets failed"] + overlap["dispatcher failed"],
        "workers uvicorn started again": restarted,
        "wall": f"{wall:.1f} s",
    }
    faults = [_fault_row(f, chaos, ears) for f in chaos.faults]
    failures = {k: v for k, v in tally(failed).items() if v}
    failures |= {f"soak: {k}": v for k, v in soak.items() if v}
    if result["tablets that gave up"]:
        failures["tablets that gave up"] = result["tablets that gave up"]
    examples = {k: v[:10] for k, v in (failed | fail | case_fail).items() if v}
    return Report(result, faults, failures, examples)


def _fault_row(fault: Fault, chaos: Chaos, ears: Ears) -> dict[str, Any]:
    """A fault's figures: when (s into the day), how long /ready was not 200, how soon after
    its end /ready, a tablet's sync and each feed were back, what clients heard meanwhile."""
    start = chaos.faults[0].began - chaos.plan.gap

    def after(times: list[float]) -> float | None:
        later = [t for t in times if fault.ended is not None and t >= fault.ended]
        return round(min(later) - fault.ended, 1) if later and fault.ended else None

    within = [h for h in ears.heard if fault.covers(h.sent, h.at, 0.0)]
    during = Counter(h.kind for h in within)
    answered = [h.at - h.sent for h in within if h.kind in ("ok", "503")]
    return {
        "fault": fault.name, "at_s": round(fault.began - start, 1),
        "lasted_s": round((fault.ended or fault.began) - fault.began, 1),
        "ready_again_s": round(fault.recovered - fault.ended, 1)
        if fault.recovered and fault.ended else None,
        "sync_again_s": after([h.at for h in ears.heard if h.path == "/sync"
                               and h.kind == "ok"]),
        "stream_again_s": after([t for _, t in chaos.stream]),
        "map_again_s": after([t for _, t in chaos.mapped]),
        "answers_503": during["503"], "refused": during["refused"], "cut": during["cut"],
        "5xx": during["5xx"], "hangs": during["hang"], "server_starts": fault.starts,
        "slowest_answer_s": round(max(answered), 1) if answered else None,
        "under_load": fault.loaded,
    }


def _print(report: Report, stamp: str, path: Path) -> None:
    table = Table("measure", "value", title=f"chaos {stamp}: the audit")
    for k, v in report.figures.items():
        table.add_row(k, str(v))
    faults = Table("fault", "at", "lasted", "/ready again", "sync again", "stream again",
                   "map again", "503s", "refused", "cut", "5xx", "hangs", "slowest answer",
                   title="each fault (seconds; 'again': after the fault's end)")
    for f in report.faults:
        faults.add_row(f["fault"] + (f" ({f['server_starts']} starts)"
                                     if f["server_starts"] > 1 else ""),
                       *(str(f[k]) for k in ("at_s", "lasted_s", "ready_again_s",
                                             "sync_again_s", "stream_again_s", "map_again_s",
                                             "answers_503", "refused", "cut", "5xx", "hangs",
                                             "slowest_answer_s")))
    console = Console(width=150)
    console.print(table)
    console.print(faults)
    print(f"results: {path}")


def main() -> int:
    plan = Plan.from_env()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = OUT / stamp
    began = time.monotonic()
    report = run(plan, out, lambda line: print(f"{time.monotonic() - began:6.1f} s  {line}",
                                                flush=True))
    path = out / "result.json"
    _print(report, stamp, path)
    if report.failures:
        print(f"FAILED: {', '.join(f'{k} {v}' for k, v in report.failures.items())} "
              f"(examples in {path})", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
