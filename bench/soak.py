"""Soak test of offline sync: every grid worker's tablet and a few supervisors' tablets edit at
once over a link that loses requests and answers; then the log is audited against what the
devices made.

    .venv/bin/python -m bench.soak                          # make soak: 263 tablets x 30 edits
    SOAK_TABLETS=20 SOAK_EDITS=10 .venv/bin/python -m bench.soak

Why: a field app must never lose an edit nor overwrite a colleague's without a conflict,
whatever the link does; the unit tests show each case once, this shows them under load. The
tablets keep their outbox as the field page does (``twin/static/field/field.js``: the local
view is the server's features with the pending edits laid over them; one edit per feature a
batch; later edits of a feature rebased on the version an applied or merged answer gives;
retries with backoff), so the audit judges the sync path as a real tablet drives it.

An overwrite is checked twice: from the log alone (another actor's change to the field
between the base version sent and the edit), and from the device's own record (the same from
the version the user actually saw, when the written-over value is not the one the device
showed), which also catches what a rebase hides.

The database ``twin_soak`` is made afresh in Twin's own cluster (``twin sample --if-empty``)
and dropped at the end unless SOAK_KEEP_DB=1. Tokens are issued with ``twin.users`` directly:
signing in costs an argon2 hash (a quarter-second of CPU) per tablet, and it is not what is
measured. Results: ``.twin/bench/soak/<stamp>.json`` and the server's log beside it. Exit
status 1 when an edit was lost or logged twice, a field was overwritten without a conflict,
the server answered 5xx, or any other check of the audit failed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import httpx
import psycopg
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table
from shapely import union_all
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from bench.twin_server import serve_twin
from twin.layer import Layer
from twin.registry import all_layers
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo, make_engine
from twin.users import User, add_user, hash_password, issue_token

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
OUT = ROOT / ".twin" / "bench" / "soak"

DB = os.environ.get("SOAK_DB", "twin_soak")
TABLETS = int(os.environ.get("SOAK_TABLETS", "263"))
EDITS = int(os.environ.get("SOAK_EDITS", "30"))
DROP = float(os.environ.get("SOAK_DROP", "0.2"))
SUPERVISORS = int(os.environ.get("SOAK_SUPERVISORS", "4"))
THINK = float(os.environ.get("SOAK_THINK", "1.0"))  # mean seconds between one user's edits
SEED = int(os.environ.get("SOAK_SEED", "7"))
KEEP_DB = os.environ.get("SOAK_KEEP_DB") == "1"
PASSWORD = os.environ.get("TWIN_DEMO_PASSWORD", "twin-demo")

POINT_LAYERS = ("waste_points", "charging_points")
EDIT_LAYERS = (*POINT_LAYERS, "fire_passages")
HOT = 3  # features per grid that its worker edits most, and supervisors edit too
P_CREATE, P_BAD, P_OFFLINE = 0.03, 0.02, 0.1
SKEW = 600.0  # seconds a device clock may be off
MOVE = 3e-5  # degrees a point moves at most (about 3 m)
BACKOFF_START, BACKOFF_MAX, MAX_ATTEMPTS = 0.2, 3.0, 60
BLOCKERS = ("电动车 e-bikes", "杂物 clutter", "私家车 a parked car")
META = frozenset({"micro_grid", "residential_area", "version", "updated", "changed_by"})
CREATED = "created"  # a step's target: the user's newest point
REASONS = ("巡查 patrol", "居民反映 residents' report", "复核 recheck")
SHANGHAI = timezone(timedelta(hours=8))


class Dropped(Exception):
    """The tablet heard nothing: its request or the answer was lost on the link."""


class Refused(Exception):
    """The server answered something other than 200."""


class GaveUp(Exception):
    """A tablet failed MAX_ATTEMPTS times in a row without progress."""


@dataclass
class Feature:
    """A tablet's copy of a server feature: its fields as an edit names them."""

    layer: str
    id: int
    version: int
    grid: str | None
    fields: dict[str, Any]

    @classmethod
    def of(cls, served: dict[str, Any]) -> Feature:
        props = served["properties"]
        fields = {k: v for k, v in props.items() if k not in META}
        return cls(served["layer"], served["id"], props["version"], props.get("micro_grid"),
                   fields | {"geometry": served["geometry"]})


@dataclass(frozen=True)
class Step:
    """An edit a user will make: a new point, or fields of a feature (``bad``: a value
    outside the layer's model, which the server must refuse)."""

    op: Literal["create", "update"]
    layer: str
    key: str  # "layer:id", or CREATED
    fields: tuple[str, ...] = ()
    bad: bool = False


@dataclass
class Made:
    """An edit as a device made it (``edit`` is its wire form, rebased in place as field.js
    does) and what the server answered each time it arrived."""

    edit: dict[str, Any]
    key: str
    seen: int | None  # the version the device had when the user made it
    bad: bool
    answers: list[str] = field(default_factory=list)
    heard: dict[str, Any] | None = None


def _key(layer: str, fid: int) -> str:
    return f"{layer}:{fid}"


# ---------------------------------------------------------------------------------------
# Values a user types: read from the layer's model, so a new layer needs no change here

def _fields(layer: Layer) -> list[str]:
    """What a tablet edits: the layer's attributes, tags, and where a point is."""
    return [*layer.attributes.model_fields, "tags",
            *(["geometry"] if layer.geometry_type == "Point" else [])]


def _numeric(layer: Layer) -> str:
    return next(name for name, info in layer.attributes.model_fields.items()
                if info.annotation in (int, float))


def _bounds(info: FieldInfo) -> tuple[float, float, float]:
    """Lowest and highest valid value, and the step a user changes it by."""
    step = 1.0 if info.annotation is int else 0.5
    lo, hi = step, 1000.0
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            lo = float(rule.ge)  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Gt):
            lo = float(rule.gt) + step  # type: ignore[arg-type]
        elif isinstance(rule, annotated_types.Le):
            hi = float(rule.le)  # type: ignore[arg-type]
    return lo, hi, step


def _changed(layer: Layer, name: str, current: Any, rng: random.Random) -> Any:
    """A valid new value of an attribute or the tags, other than ``current``."""
    if name == "tags":
        tags = list(current or [])
        if layer.tags.labels and rng.random() < 0.5:
            label = rng.choice(layer.tags.labels)
            return [t for t in tags if t != label] if label in tags else [*tags, label]
        key = rng.choice(sorted(layer.tags.keys))
        other = rng.choice([v for v in layer.tags.keys[key] if f"{key}={v}" not in tags])
        return [t for t in tags if not t.startswith(f"{key}=")] + [f"{key}={other}"]
    info = layer.attributes.model_fields[name]
    kind = info.annotation
    if get_origin(kind) is Literal:
        return rng.choice([v for v in get_args(kind) if v != current])
    if kind is bool:
        return not current
    if kind in (int, float):
        lo, hi, step = _bounds(info)
        start = float(current) if isinstance(current, int | float) else lo
        value = rng.choice([start + k * step for k in (-2, -1, 1, 2)
                            if lo <= start + k * step <= hi])
        return int(value) if kind is int else round(value, 1)
    return rng.choice([v for v in (*BLOCKERS, None) if v != current])  # optional text


def _fresh(layer: Layer, rng: random.Random) -> dict[str, Any]:
    """The attributes of a new feature, each valid for the layer's model."""
    values: dict[str, Any] = {}
    for name, info in layer.attributes.model_fields.items():
        kind = info.annotation
        if get_origin(kind) is Literal:
            values[name] = rng.choice(get_args(kind))
        elif kind is bool:
            values[name] = rng.random() < 0.2
        elif kind in (int, float):
            lo, hi, step = _bounds(info)
            value = lo + step * rng.randint(0, int((min(hi, lo + 20) - lo) / step))
            values[name] = int(value) if kind is int else value
        else:
            values[name] = None
    return values


def _moved(geometry: dict[str, Any], area: BaseGeometry, rng: random.Random
           ) -> dict[str, Any] | None:
    """The point a few metres away, still inside ``area`` (its micro-grid); None when no
    such place was found."""
    x, y = geometry["coordinates"]
    for _ in range(10):
        spot = Point(round(x + rng.uniform(-MOVE, MOVE), 7), round(y + rng.uniform(-MOVE, MOVE), 7))
        if area.contains(spot):
            return {"type": "Point", "coordinates": [spot.x, spot.y]}
    return None


def _somewhere(area: BaseGeometry, rng: random.Random) -> dict[str, Any]:
    x0, y0, x1, y1 = area.bounds
    for _ in range(200):
        spot = Point(round(rng.uniform(x0, x1), 7), round(rng.uniform(y0, y1), 7))
        if area.contains(spot):
            return {"type": "Point", "coordinates": [spot.x, spot.y]}
    spot = area.representative_point()
    return {"type": "Point", "coordinates": [spot.x, spot.y]}


# ---------------------------------------------------------------------------------------
# A tablet

@dataclass
class Link:
    """What a tablet's link did: requests, losses, /sync round trips (seconds), failures."""

    requests: int = 0
    lost_requests: int = 0
    lost_answers: int = 0
    round_trips: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_errors: int = 0


class Tablet:
    """One device: its user's copy of the scope, an outbox, a clock that is off, and a link
    that drops. The user and the sync run as two tasks, as on a real tablet: edits are made
    while a batch is on its way."""

    def __init__(self, user: User, token: str, url: str, grids: tuple[str, ...],
                 rng: random.Random) -> None:
        self.user = user
        self.rng = rng
        # idle connections expire before uvicorn's 5 s keep-alive closes them under a request
        self.http = httpx.AsyncClient(base_url=url, timeout=120,
                                      limits=httpx.Limits(keepalive_expiry=4.0),
                                      headers={"Authorization": f"Bearer {token}"})
        self.scope = {} if user.role == "worker" else {"grids": ",".join(grids)}
        self.device = f"tablet-{user.name}"
        self.skew = timedelta(seconds=rng.uniform(-SKEW, SKEW))
        self.features: dict[str, Feature] = {}
        self.grids: dict[str, BaseGeometry] = {}
        self.cursor: str | None = None
        self.outbox: list[Made] = []
        self.made: list[Made] = []
        self.renamed: dict[str, str] = {}  # a new point's local key -> its server key
        self.newest: str | None = None  # the local key of the user's newest point
        self.seq = 0
        self.settled = 0
        self.plan: list[Step] = []
        self.online = True
        self.done = False
        self.wake = asyncio.Event()
        self.link = Link()

    @property
    def area(self) -> BaseGeometry:
        return union_all(list(self.grids.values()))

    # -- the link --------------------------------------------------------------------------

    async def _exchange(self, method: str, path: str, **kwargs: Any
                        ) -> tuple[httpx.Response, bool]:
        """One request over the link: lost on the way (Dropped), or answered, with whether
        the tablet hears the answer (when not, the server did the work all the same)."""
        self.link.requests += 1
        if self.rng.random() < DROP:
            self.link.lost_requests += 1
            raise Dropped
        start = time.perf_counter()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            self.link.errors.append(f"{method} {path}: {exc!r}")
            raise Dropped from exc
        if path == "/sync":
            self.link.round_trips.append(time.perf_counter() - start)
        if response.status_code != 200:
            self.link.server_errors += response.status_code >= 500
            self.link.errors.append(f"{method} {path}: {response.status_code} "
                                    f"{response.text[:500]}")
            raise Refused(response.status_code)
        heard = self.rng.random() >= DROP
        self.link.lost_answers += not heard
        return response, heard

    async def _retrying(self, action: Callable[[], Awaitable[None]]) -> None:
        """``action`` until it succeeds, backing off while the link stays bad."""
        backoff, failures, settled = BACKOFF_START, 0, self.settled
        while True:
            try:
                await action()
                return
            except (Dropped, Refused):
                failures = 0 if self.settled > settled else failures + 1
                settled = self.settled
                if failures >= MAX_ATTEMPTS:
                    raise GaveUp(f"{self.user.name}: {failures} failures in a row") from None
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(BACKOFF_MAX, backoff * 2)

    # -- sync, as field.js does it ---------------------------------------------------------

    async def pull(self) -> None:
        """The scope: whole the first time, then what changed since the cursor."""
        params = self.scope | ({"since": self.cursor} if self.cursor is not None else {})
        response, heard = await self._exchange("GET", "/sync/scope", params=params)
        if not heard:
            raise Dropped
        body = response.json()
        for served in body["features"]["features"]:
            self.features[_key(served["layer"], served["id"])] = Feature.of(served)
        for gone in body["deleted"]:
            self.features.pop(_key(gone["layer"], gone["id"]), None)
        if self.cursor is None:
            self.grids = {g["properties"]["code"]: shape(g["geometry"])
                          for g in body["grids"]["features"]}
        self.cursor = body["cursor"]

    async def _push(self) -> None:
        while self.outbox:
            batch, keys = [], set()
            for made in self.outbox:  # one edit per feature: the next is rebased on this one
                if made.key not in keys:
                    keys.add(made.key)
                    batch.append(made)
            rest = [made for made in self.outbox if made not in batch]
            response, heard = await self._exchange("POST", "/sync", json={
                "edits": [made.edit for made in batch], "outbox": {
                    "device_id": self.device, "waiting": len(rest),
                    "oldest_device_time": rest[0].edit["device_time"] if rest else None,
                    "sent_at": (datetime.now(UTC) + self.skew).isoformat()}})
            results = response.json()["results"]
            for made, result in zip(batch, results, strict=True):
                made.answers.append(result["status"])
            if not heard:
                raise Dropped
            for made, result in zip(batch, results, strict=True):
                self._settle(made, result)

    def _settle(self, made: Made, result: dict[str, Any]) -> None:
        self.outbox.remove(made)
        self.settled += 1
        made.heard = result
        layer = made.edit["layer"]
        if result["feature"]:
            self.features[_key(layer, result["feature"]["id"])] = Feature.of(
                result["feature"] | {"layer": layer})
        status = result["status"]
        if status == "duplicate":  # the first answer again: a problem or conflict if it was one
            status = ("conflict" if result.get("conflict") is not None
                      else "rejected" if result.get("problems") else "applied")
        later = [m for m in self.outbox if m.key == made.key]
        if status in ("applied", "merged"):
            for nxt in later:
                nxt.edit["base_version"] = result["version"]
                if made.edit["op"] == "create":
                    nxt.edit["feature_id"] = result["feature"]["id"]
                    nxt.key = _key(layer, result["feature"]["id"])
            if made.edit["op"] == "create":
                self.renamed[made.key] = _key(layer, result["feature"]["id"])
        elif status == "rejected" and made.edit["op"] == "create":
            for nxt in later:  # field.js: they can never be sent
                self.outbox.remove(nxt)
                nxt.heard = {"status": "rejected", "local": True}

    async def _round(self) -> None:
        await self._push()
        await self.pull()

    async def start(self) -> None:
        """The day begins with the whole scope."""
        await self._retrying(self.pull)

    async def syncing(self) -> None:
        """Sync whenever woken and online, until the user is done and the outbox empty."""
        while not (self.done and not self.outbox):
            await self.wake.wait()
            self.wake.clear()
            if self.online:
                await self._retrying(self._round)

    # -- the user --------------------------------------------------------------------------

    def _view(self, key: str) -> dict[str, Any] | None:
        """The feature as the tablet shows it: the server's, with pending edits laid over."""
        feature = self.features.get(key)
        fields = dict(feature.fields) if feature else None
        for made in self.outbox:
            if made.key == key:
                if made.edit["op"] == "create":
                    fields = {}
                if fields is not None:
                    fields.update({n: c["new"] for n, c in made.edit["changes"].items()})
        return fields

    def _make(self, step: Step) -> None:
        layer = all_layers()[step.layer]
        self.seq += 1
        device_time = (datetime.now(UTC) + self.skew).astimezone(SHANGHAI)
        edit: dict[str, Any] = {
            "edit_id": str(uuid.uuid4()), "device_id": self.device, "device_seq": self.seq,
            "layer": layer.name, "op": step.op, "device_time": device_time.isoformat(),
            "reason": self.rng.choice(REASONS)}
        if step.op == "create":
            self._create(layer, edit)
            return
        key = step.key
        if key == CREATED:
            key = self.renamed.get(self.newest, self.newest) if self.newest else ""
        fields = self._view(key)
        if fields is None:
            return  # a new point the server refused: nothing to edit
        feature = self.features.get(key)
        area = self.grids.get(feature.grid or "") if feature else None
        new: dict[str, Any] = {}
        for name in step.fields:
            if step.bad:
                new[name] = int(_bounds(layer.attributes.model_fields[name])[1]) + 1
                continue
            moved = _moved(fields["geometry"], area or self.area, self.rng) \
                if name == "geometry" else None
            if name == "geometry" and moved is None:
                name = layer.state_field or name  # no room to move it: change its state
            new[name] = moved or _changed(layer, name, fields.get(name), self.rng)
        edit["changes"] = {n: {"old": fields.get(n), "new": v} for n, v in new.items()}
        if "geometry" in new:
            edit["accuracy_m"] = round(self.rng.uniform(3, 15), 1)
        if feature is not None:  # known to the server (a new point learns it when answered)
            edit |= {"feature_id": feature.id, "base_version": feature.version}
        self._queue(Made(edit, key, feature.version if feature else None, step.bad))

    def _create(self, layer: Layer, edit: dict[str, Any]) -> None:
        key = f"local:{edit['edit_id']}"
        tag = f"class={self.rng.choice(layer.tags.keys['class'])}"
        values = _fresh(layer, self.rng) | {"tags": [tag],
                                            "geometry": _somewhere(self.area, self.rng)}
        edit["changes"] = {n: {"old": None, "new": v} for n, v in values.items()}
        edit["accuracy_m"] = round(self.rng.uniform(3, 15), 1)
        self.newest = key
        self._queue(Made(edit, key, None, False))

    def _queue(self, made: Made) -> None:
        self.outbox.append(made)
        self.made.append(made)
        self.wake.set()

    async def using(self, think: float) -> None:
        """The user's day: an edit every ``think`` seconds or so, now and then offline."""
        offline = 0
        try:
            for step in self.plan:
                await asyncio.sleep(self.rng.expovariate(1 / think))
                if offline == 0 and self.rng.random() < P_OFFLINE:
                    offline = self.rng.randint(3, 8)
                self.online = offline == 0
                offline = max(0, offline - 1)
                self._make(step)
        finally:  # the sync task ends only once told so
            self.online, self.done = True, True
            self.wake.set()


# ---------------------------------------------------------------------------------------
# Plans: who edits what, so that workers and supervisors meet on the same features

def _worker_plan(tablet: Tablet, rng: random.Random) -> dict[str, set[str]]:
    """The worker's edits (``tablet.plan``) and its hot features with the fields it edits
    on them most."""
    area = tablet.area
    mine = sorted(key for key, f in tablet.features.items()
                  if f.layer in EDIT_LAYERS and f.grid in tablet.grids
                  and area.covers(shape(f.fields["geometry"])))
    layers = all_layers()
    hot = {}
    for key in rng.sample(mine, min(HOT, len(mine))):
        layer = layers[key.partition(":")[0]]
        state = layer.state_field or _numeric(layer)
        hot[key] = {state, rng.choice([n for n in _fields(layer) if n != state])}
    created: str | None = None
    for _ in range(EDITS):
        draw = rng.random()
        if draw < P_CREATE or not (mine or created):
            created = rng.choice(POINT_LAYERS)
            tablet.plan.append(Step("create", created, CREATED))
            continue
        key = rng.choice(sorted(hot)) if hot and rng.random() < 0.7 else rng.choice(
            [*mine, *([CREATED] if created else [])])
        layer = layers[created if key == CREATED and created else key.partition(":")[0]]
        if draw < P_CREATE + P_BAD:
            tablet.plan.append(Step("update", layer.name, key, (_numeric(layer),), bad=True))
            continue
        names = _fields(layer)
        first = rng.choice(sorted(hot[key])) if key in hot and rng.random() < 0.85 \
            else rng.choice(names)
        second = {rng.choice(names)} if rng.random() < 0.15 else set()
        tablet.plan.append(Step("update", layer.name, key, tuple(sorted({first} | second))))
    return hot


def _supervisor_plan(tablet: Tablet, hot: dict[str, set[str]], rng: random.Random
                     ) -> Counter[str]:
    """Edits of the workers' hot features: half on a field the worker edits there (a conflict
    when the values differ and the edits cross), half on another field (a merge)."""
    overlap: Counter[str] = Counter()
    choices = sorted(key for key in hot if key in tablet.features
                     and tablet.features[key].grid in tablet.grids)
    for _ in range(3 * EDITS if choices else 0):
        key = rng.choice(choices)
        layer = all_layers()[key.partition(":")[0]]
        same = rng.random() < 0.5
        pool = sorted(hot[key]) if same else sorted(set(_fields(layer)) - hot[key])
        overlap["same field" if same else "other field"] += 1
        tablet.plan.append(Step("update", layer.name, key, (rng.choice(pool),)))
    return overlap


# ---------------------------------------------------------------------------------------
# Setting up: a fresh database, accounts and tokens, a server

def _env() -> dict[str, str]:
    return {**os.environ, "TWIN_DB_NAME": DB}


def _conninfo() -> str:
    return libpq_conninfo(database_urls(Settings(db_name=DB)).admin)


def _drop() -> None:
    with psycopg.connect(_conninfo(), dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


def _prepare() -> None:
    _drop()
    for args in (("db", "start"), ("db", "migrate"), ("sample", "--if-empty")):
        print("$ twin", *args, flush=True)
        subprocess.run([str(TWIN), *args], env=_env(), cwd=ROOT, check=True)  # noqa: S603


def _accounts(rng: random.Random) -> tuple[list[tuple[User, str]], list[tuple[User, str]]]:
    """Tokens for TABLETS workers (all when there are fewer) and SUPERVISORS new accounts,
    commanders and admins by turns."""
    engine = make_engine(database_urls(Settings(db_name=DB)).admin, pool_size=2)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT u.id, u.name, u.role, array_agg(g.grid_code ORDER BY g.grid_code) "
                "FROM twin.users u JOIN twin.user_grids g ON g.user_id = u.id "
                "WHERE u.role = 'worker' AND u.name LIKE 'worker-%%' AND u.active "
                "GROUP BY u.id ORDER BY u.name").all()
        workers = [User(r[0], r[1], r[2], tuple(r[3])) for r in rows]
        workers = sorted(rng.sample(workers, min(TABLETS, len(workers))), key=lambda u: u.name)
        secret = hash_password(PASSWORD)
        supervisors = [add_user(engine, f"supervisor-{i + 1}", ("commander", "admin")[i % 2],
                                secret) for i in range(SUPERVISORS)]
        return ([(u, issue_token(engine, u, 720)[0]) for u in workers],
                [(u, issue_token(engine, u, 720)[0]) for u in supervisors])
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------
# The run

async def _run(url: str, workers: list[tuple[User, str]], supervisors: list[tuple[User, str]],
               rng: random.Random) -> tuple[list[Tablet], Counter[str], float]:
    """Scopes first (every tablet starts its day with them), then plans, then the day."""
    grids = [code for user, _ in workers for code in user.grids]
    tablets = [Tablet(user, token, url, user.grids, random.Random(rng.random()))  # noqa: S311
               for user, token in workers]
    tablets += [Tablet(user, token, url, tuple(grids[i::len(supervisors)]),
                       random.Random(rng.random()))  # noqa: S311
                for i, (user, token) in enumerate(supervisors)]
    try:
        await asyncio.gather(*(t.start() for t in tablets))
        hot: dict[str, set[str]] = {}
        for tablet in tablets[:len(workers)]:
            hot |= _worker_plan(tablet, tablet.rng)
        overlap: Counter[str] = Counter()
        for tablet in tablets[len(workers):]:
            overlap += _supervisor_plan(tablet, hot, tablet.rng)
        start = time.perf_counter()
        done = await asyncio.gather(*(task for t in tablets for task in (
            t.using(THINK if t.user.role == "worker" else THINK / 3), t.syncing())),
            return_exceptions=True)
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(t.http.aclose() for t in tablets))
    for failure in done:
        if isinstance(failure, BaseException):
            print(f"a tablet failed: {failure!r}", file=sys.stderr)
            overlap["tablets failed"] += 1
    return tablets, overlap, wall


# ---------------------------------------------------------------------------------------
# The audit

OVERWRITTEN_SQL = """
SELECT e.actor, e.edit_id, o.id, o.actor, f
  FROM twin.edits e
  JOIN twin.changes c ON c.edit_id = e.edit_id AND c.actor = e.actor AND c.operation = 'update'
  JOIN twin.changes o ON o.layer = c.layer AND o.feature_id = c.feature_id
                     AND o.version_after > e.base_version
                     AND o.version_after <= c.version_before AND o.actor <> e.actor
 CROSS JOIN LATERAL unnest(o.changed) AS f
 WHERE e.status IN ('applied', 'merged') AND f = ANY(c.changed)
   AND f NOT IN ('micro_grid', 'residential_area')"""


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "geometry" and isinstance(a, dict) and isinstance(b, dict):
        return a["type"] == b["type"] and all(
            math.isclose(p, q, abs_tol=1e-8) for p, q in zip(
                a["coordinates"], b["coordinates"], strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b)
    return bool(a == b)


def _audit(tablets: list[Tablet]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Every edit a device made against twin.edits and twin.changes: figures, and the
    failures (each with examples)."""
    made = {(t.user.name, m.edit["edit_id"]): m for t in tablets for m in t.made}
    with psycopg.connect(_conninfo()) as conn:
        edits = {(r[0], r[1]): r[2:] for r in conn.execute(
            "SELECT actor, edit_id, status, version, feature_id, layer, base_version, "
            "ARRAY(SELECT jsonb_object_keys(coalesce(result -> 'fields', '{}'))) "
            "FROM twin.edits")}
        logged = {r[0]: r[1:] for r in conn.execute(
            "SELECT edit_id, count(*), array_agg(actor), array_agg(operation), "
            "array_agg(client_time), array_agg(id) FROM twin.changes "
            "WHERE edit_id IS NOT NULL GROUP BY 1")}
        overwritten = conn.execute(OVERWRITTEN_SQL).fetchall()
        still_waiting = conn.execute("SELECT device, actor, waiting FROM twin.device_outboxes "
                                     "WHERE waiting > 0").fetchall()
        changes = {r[0]: r for r in conn.execute(
            "SELECT id, edit_id, actor, layer, feature_id, version_before, version_after, "
            "changed, old_values FROM twin.changes WHERE layer = ANY(%s) ORDER BY id",
            [list(EDIT_LAYERS)])}
        wanted = [(e[2], e[1]) for e in edits.values() if e[0] in ("applied", "merged")]
        versions = {(r[0], r[1]): r[2:] for r in conn.execute(
            "SELECT v.feature_id, v.version, v.name, v.props, v.tags, ST_AsGeoJSON(v.geom, 9) "
            "FROM twin.feature_versions v JOIN unnest(%s::bigint[], %s::int[]) AS w(id, version)"
            " ON v.feature_id = w.id AND v.version = w.version",
            [[w[0] for w in wanted], [w[1] for w in wanted]])}
    fail: dict[str, list[Any]] = {k: [] for k in (
        "lost", "logged twice or both", "overwritten without conflict",
        "answer contradicts the log", "duplicates not as expected", "valid edit rejected",
        "invalid edit applied", "device time altered", "phantom edits",
        "outbox reported waiting after the last sync")}
    fail["outbox reported waiting after the last sync"] = [
        {"edit": device, "actor": actor, "waiting": n} for device, actor, n in still_waiting]
    fail["overwritten without conflict"] = [
        {"edit": r[1], "actor": r[0], "check": "log, base as sent", "field": r[4],
         "over change": r[2], "of": r[3]} for r in overwritten]
    by_feature: dict[tuple[str, int], list[Any]] = {}
    for change in changes.values():
        by_feature.setdefault((change[3], change[4]), []).append(change)
    fail["phantom edits"] = [{"edit": k[1], "actor": k[0]} for k in edits if k not in made]
    figures: Counter[str] = Counter()
    for (actor, edit_id), m in made.items():
        row, log = edits.get((actor, edit_id)), logged.get(edit_id, (0, [], [], [], []))
        n = log[0]
        example = {"edit": edit_id, "actor": actor, "sent": m.edit, "answers": m.answers}
        figures["duplicates answered"] += m.answers.count("duplicate")
        if m.answers.count("duplicate") != max(len(m.answers) - 1, 0) or (
                m.answers and m.answers[0] == "duplicate"):
            fail["duplicates not as expected"].append(example)
        if row is None:
            fail["lost"].append(example | {"why": "not in twin.edits"})
            continue
        status, version, fid = row[0], row[1], row[2]
        figures[status] += 1
        figures[f"{status} ({m.edit['op']})"] += 1
        heard = (m.heard or {}).get("status")
        if heard not in (status, "duplicate") or (heard == "duplicate" and (
                ("conflict" in (m.heard or {})) != (status == "conflict"))):
            fail["answer contradicts the log"].append(example | {"log": status})
        if status == "conflict":
            clashed = {c[2] for c in by_feature.get((row[3], fid), [])
                       if (row[4] or 0) < c[6] <= (version or 0) and set(c[7]) & set(row[5])}
            figures["conflicts with own edits only"] += clashed == {actor}
        if status in ("conflict", "rejected"):
            if n:
                fail["logged twice or both"].append(example | {"why": f"{status} yet logged"})
            if status == "rejected" and not m.bad:
                fail["valid edit rejected"].append(example | {"result": m.heard})
            continue
        if m.bad:
            fail["invalid edit applied"].append(example)
        if n > 1 or (n and (set(log[1]) != {actor} or log[2] != [
                "insert" if m.edit["op"] == "create" else "update"])):
            fail["logged twice or both"].append(example | {"changes": log[4]})
        stored = versions.get((fid, version))
        state = {} if stored is None else {**stored[1], "name": stored[0], "tags": stored[2],
                                           "geometry": json.loads(stored[3])}
        wrong = [name for name, change in m.edit["changes"].items()
                 if stored is None or not _same(name, change["new"], state.get(name))]
        if wrong:
            fail["lost"].append(example | {"why": f"not in effect at version {version}",
                                           "fields": wrong})
        if n == 0:
            figures["applied or merged, already so"] += 1
            continue
        sent = datetime.fromisoformat(m.edit["device_time"])
        if log[3][0] != sent:
            fail["device time altered"].append(example | {"logged": str(log[3][0])})
        mine = changes[log[4][0]]
        if m.edit["op"] == "update":
            _unseen(fail, example, m, mine, by_feature[(mine[3], mine[4])])
    figures["conflicts of supervisors"] = sum(
        1 for (actor, _), row in edits.items() if row[0] == "conflict"
        and actor.startswith("supervisor-"))
    return dict(figures), fail


def _unseen(fail: dict[str, list[Any]], example: dict[str, Any], m: Made, mine: Any,
            history: list[Any]) -> None:
    """Overwrites the log's own check cannot see: a field another actor changed after the
    version the device had when the user made the edit (before any rebase), written over
    with a value the device never saw."""
    seen = m.seen if m.seen is not None else m.edit["base_version"]
    for other in history:
        if other[2] == mine[2] or not seen < other[6] <= mine[5]:
            continue
        for name in set(other[7]) & set(mine[7]) & set(m.edit["changes"]):
            if not _same(name, m.edit["changes"][name]["old"], mine[8].get(name)):
                fail["overwritten without conflict"].append(example | {
                    "check": "device, version seen", "field": name, "over change": other[0],
                    "of": other[2], "device saw": m.edit["changes"][name]["old"],
                    "server had": mine[8].get(name), "version seen": seen,
                    "base sent": m.edit["base_version"],
                    "rebased": seen != m.edit["base_version"]})


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    rng = random.Random(SEED)  # noqa: S311 (a repeatable run, not a secret)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    began = time.perf_counter()
    _prepare()
    workers, supervisors = _accounts(rng)
    server, url = serve_twin(_env(), OUT / f"{stamp}.server.log")
    try:
        print(f"{len(workers)} worker tablets and {len(supervisors)} supervisors' tablets, "
              f"{EDITS} edits each (supervisors {3 * EDITS}), drops {DROP:.0%} each way",
              flush=True)
        tablets, overlap, wall = asyncio.run(_run(url, workers, supervisors, rng))
        figures, fail = _audit(tablets)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not KEEP_DB:
            _drop()
    made = sum(len(t.made) for t in tablets)
    trips = [s * 1000 for t in tablets for s in t.link.round_trips]
    link = {k: sum(getattr(t.link, k) for t in tablets)
            for k in ("requests", "lost_requests", "lost_answers", "server_errors")}
    failures = {k: len({e["edit"] for e in v}) for k, v in fail.items()}
    overwrites = fail["overwritten without conflict"]
    result = {
        "stamp": stamp, "db": DB, "drop": DROP, "think_s": THINK, "seed": SEED,
        "tablets": len(workers), "supervisors": len(supervisors), "edits_made": made,
        "applied": figures.get("applied", 0), "merged": figures.get("merged", 0),
        "duplicates_answered": figures.get("duplicates answered", 0),
        "conflicts": figures.get("conflict", 0), "rejected": figures.get("rejected", 0),
        "lost": failures["lost"], "overwritten": failures["overwritten without conflict"],
        "wall_s": round(wall, 1), "edits_per_s": round(made / wall, 1),
        "sync_p50_ms": round(_percentile(trips, 0.5), 1),
        "sync_p99_ms": round(_percentile(trips, 0.99), 1), "syncs": len(trips),
        "sync_mean_ms": round(statistics.fmean(trips), 1) if trips else None,
        "edits_per_sync": round(sum(len(m.answers) for t in tablets for m in t.made)
                                / max(1, len(trips)), 2),
        "link": link, "figures": figures, "overlap": dict(overlap),
        "total_s": round(time.perf_counter() - began, 1),
        "failures": failures,
        "overwritten_by_check": {check: len({e["edit"] for e in overwrites if e["check"] == check})
                                 for check in {e["check"] for e in overwrites}},
        "overwritten_after_rebase": len({e["edit"] for e in overwrites if e.get("rebased")}),
        "examples": {k: v[:10] for k, v in fail.items() if v},
        "errors": [e for t in tablets for e in t.link.errors][:50],
    }
    path = OUT / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    _print(result, path)
    bad = [k for k, v in failures.items() if v] + [k for k, v in (
        ("5xx answers", link["server_errors"]), ("tablets failed", overlap["tablets failed"]))
        if v]
    if bad:
        print(f"FAILED: {', '.join(bad)} (examples in {path})", file=sys.stderr)
    return 1 if bad else 0


def _print(r: dict[str, Any], path: Path) -> None:
    f = r["figures"]
    table = Table("measure", "value", title=f"soak {r['stamp']}: sync over a link dropping "
                  f"{r['drop']:.0%} of requests and of answers")
    rows = [
        ("tablets", f"{r['tablets']} workers + {r['supervisors']} supervisors"),
        ("edits made", f"{r['edits_made']:,}"),
        ("applied", f"{r['applied']:,}"),
        ("merged", f"{r['merged']:,}"),
        ("  no-ops (value already so)", f"{f.get('applied or merged, already so', 0):,}"),
        ("duplicates answered", f"{r['duplicates_answered']:,}"),
        ("conflicts", f"{r['conflicts']:,}"),
        ("  supervisors' / against own edits only",
         f"{f.get('conflicts of supervisors', 0)} / {f.get('conflicts with own edits only', 0)}"),
        ("rejected", f"{r['rejected']:,} (all meant to be: "
                     f"{'yes' if not r['failures']['valid edit rejected'] else 'NO'})"),
        ("lost", f"{r['lost']}"),
        ("overwritten without conflict", f"{r['overwritten']}" + (
            f" ({r['overwritten_after_rebase']} rebased)" if r["overwritten"] else "")),
        ("other failures", ", ".join(f"{k} {v}" for k, v in r["failures"].items()
                                     if v and k not in ("lost", "overwritten without "
                                                        "conflict")) or "0"),
        ("5xx answers", f"{r['link']['server_errors']}"),
        ("requests / lost / answers lost",
         f"{r['link']['requests']:,} / {r['link']['lost_requests']:,} / "
         f"{r['link']['lost_answers']:,}"),
        ("wall time", f"{r['wall_s']:.1f} s"),
        ("edits/s", f"{r['edits_per_s']:.1f}"),
        ("/sync round trip p50 / p99", f"{r['sync_p50_ms']:.0f} / {r['sync_p99_ms']:.0f} ms"),
        ("/sync requests", f"{r['syncs']:,}, {r['edits_per_sync']} edits each"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(f"results: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
