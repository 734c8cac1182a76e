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

Cases (issue 19) ride along: each worker tablet reports SOAK_CASES cases in its own grids
through the same outbox and ``POST /sync``, and handles what is dispatched to it (learnt from
``GET /cases`` over the same link); the sample's dispatcher, over a dropping link too, files
and dispatches them with ``If-Match`` and an ``Idempotency-Key`` per move, and sends some
back and dispatches them again, so that some tablets' moves meet a case that moved on. The
audit matches every report and move to ``twin.case_events`` by its edit id: applied exactly
once, or answered conflict or rejected with a reason and not there.

Photos ride along when SOAK_PHOTOS is above 0: that share of updates adds a photo to the
feature, uploaded (``PUT /photos/{sha256}``) before the batch that carries the edit, as
field.js does; the audit finds every photo whose upload was answered in ``twin.photos``.
The knobs are ``Knobs`` (SOAK_TABLETS, SOAK_EDITS, ...); ``bench.chaos`` runs the same day,
with its tablets, dispatcher and audit, while the parts under the service break.

The database ``twin_soak`` is made afresh in Twin's own cluster (``twin sample --if-empty``)
and dropped at the end unless SOAK_KEEP_DB=1. Tokens are issued with ``twin.users`` directly:
signing in costs an argon2 hash (a quarter-second of CPU) per tablet, and it is not what is
measured. Results: ``.twin/bench/soak/<stamp>.json`` and the server's log beside it. Exit
status 1 when an edit or a case step was lost or applied twice, a field was overwritten
without a conflict, the server answered 5xx, or any other check of the audit failed.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from dataclasses import fields as dataclass_fields
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
from twin.features.edits import MAX_PHOTOS
from twin.features.photos import MAGIC
from twin.layer import Layer
from twin.registry import all_layers
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo, make_engine
from twin.users import User, add_user, hash_password, issue_token

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
OUT = ROOT / ".twin" / "bench" / "soak"

DB = os.environ.get("SOAK_DB", "twin_soak")
KEEP_DB = os.environ.get("SOAK_KEEP_DB") == "1"
JIT = os.environ.get("SOAK_JIT") == "1"  # keep the server's JIT setting on the soak's database
PASSWORD = os.environ.get("TWIN_DEMO_PASSWORD", "twin-demo")

PNG = MAGIC["image/png"]
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
UNANSWERED = "unanswered"  # a batch that reached the server answered a 5xx, or cut off
REASONS = ("巡查 patrol", "居民反映 residents' report", "复核 recheck")
SHANGHAI = timezone(timedelta(hours=8))
CASE_CATEGORY = "E0102"  # 暴露垃圾 exposed rubbish: half the reports (the rest: any a worker fixes)
P_CASE_BAD = 0.05  # reports placed outside the worker's grids (the server must refuse them)
CASE_ROUNDS = 6  # times the dispatcher takes up one case before leaving it be
DESKS = 8  # the dispatcher's moves on their way at once
SENT_BACK = "派遣有误,退回重派 dispatched to the wrong hands"
HANDLED = ("已清运 cleared", "已整改 put right", "已处置 dealt with")
DESCRIBED = ("垃圾桶满溢 bins overflowing", "散落垃圾 litter around the point",
             "乱堆物 dumped clutter", "暴露垃圾 exposed rubbish")


class Dropped(Exception):
    """The tablet heard nothing: its request or the answer was lost on the link."""


class Refused(Exception):
    """The server answered something other than 200."""


class GaveUp(Exception):
    """A tablet failed MAX_ATTEMPTS times in a row without progress."""


@dataclass(frozen=True)
class Knobs:
    """The day's workload and its link, each from ``SOAK_<NAME>`` when set (bench.chaos runs
    the same day with defaults of its own)."""

    tablets: int = 263  # worker tablets (at most one per worker account)
    edits: int = 30  # edits per worker (supervisors: 3x)
    drop: float = 0.2  # share of requests lost, and of answers lost
    supervisors: int = 4
    think: float = 1.0  # mean seconds between one user's edits
    seed: int = 7
    cases: int = 2  # cases each worker tablet reports
    sendback: float = 0.3  # dispatched cases sent back once
    case_poll: float = 5.0  # mean seconds between looks at cases
    photos: float = 0.0  # share of updates that add a photo, uploaded before their batch
    timeout: float = 120.0  # seconds a device waits for an answer

    @classmethod
    def from_env(cls, **defaults: Any) -> Knobs:
        """``SOAK_<NAME>`` where set, else ``defaults``, else the soak's own."""
        values = dict(defaults)
        for knob in dataclass_fields(cls):
            raw = os.environ.get(f"SOAK_{knob.name.upper()}")
            if raw is not None:
                values[knob.name] = type(getattr(cls, knob.name))(raw)
        return cls(**values)


# What a link reports of each request it did not lose: method, path, when it was sent
# (time.monotonic()), and the answer or the transport error.
Watch = Callable[[str, str, float, "httpx.Response | httpx.TransportError"], None]


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
    does) and what the server answered each time it arrived (UNANSWERED: a delivery that
    reached it and got no results back)."""

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
    """What a tablet's link did: requests, losses, /sync round trips (seconds), failures;
    ``drop`` is the share it loses each way, ``watch`` is told of every request it did not
    lose."""

    drop: float
    watch: Watch | None = None
    requests: int = 0
    lost_requests: int = 0
    lost_answers: int = 0
    round_trips: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_errors: int = 0


async def _over_link(http: httpx.AsyncClient, link: Link, rng: random.Random, method: str,
                     path: str, ok: tuple[int, ...] | None, **kwargs: Any
                     ) -> tuple[httpx.Response, bool]:
    """One request over a link that drops: lost on the way (Dropped), or answered, with
    whether the answer is heard. A 5xx, or an answer not ``ok`` (when given), is Refused
    (and heard: the server refused it, whatever the link does afterwards)."""
    link.requests += 1
    if rng.random() < link.drop:
        link.lost_requests += 1
        raise Dropped
    start, sent = time.perf_counter(), time.monotonic()
    try:
        response = await http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        link.errors.append(f"{method} {path}: {exc!r}")
        if link.watch:
            link.watch(method, path, sent, exc)
        raise Dropped from exc
    if link.watch:
        link.watch(method, path, sent, response)
    if path == "/sync":
        link.round_trips.append(time.perf_counter() - start)
    if response.status_code >= 500 or (ok and response.status_code not in ok):
        link.server_errors += response.status_code >= 500
        link.errors.append(f"{method} {path}: {response.status_code} {response.text[:500]}")
        raise Refused(response.status_code)
    heard = rng.random() >= link.drop
    link.lost_answers += not heard
    return response, heard


class Tablet:
    """One device: its user's copy of the scope, an outbox, a clock that is off, and a link
    that drops. The user and the sync run as two tasks, as on a real tablet: edits are made
    while a batch is on its way."""

    def __init__(self, user: User, token: str, url: str, grids: tuple[str, ...],
                 rng: random.Random, knobs: Knobs, watch: Watch | None = None) -> None:
        self.user = user
        self.rng = rng
        self.knobs = knobs
        # idle connections expire before uvicorn's 5 s keep-alive closes them under a request
        self.http = httpx.AsyncClient(base_url=url, timeout=knobs.timeout,
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
        self.link = Link(knobs.drop, watch)
        self.users = 1  # the user's tasks still going (the day's edits, the cases)
        self.broken = False  # the sync task gave up
        # cases: what this tablet reported and moved (its own record), what it knows
        self.case_made: list[Made] = []
        self.categories: list[str] = []
        self.reports = 0  # reports the user made so far
        self.tried: dict[int, int] = {}  # case id -> the version its last move was based on
        self.photos: list[str] = []  # every photo taken (its SHA-256)
        self.unsent: dict[str, bytes] = {}  # those not yet uploaded

    @property
    def area(self) -> BaseGeometry:
        return union_all(list(self.grids.values()))

    # -- the link --------------------------------------------------------------------------

    async def _exchange(self, method: str, path: str, ok: tuple[int, ...] = (200,),
                        **kwargs: Any) -> tuple[httpx.Response, bool]:
        """One request over the link: lost on the way (Dropped), or answered, with whether
        the tablet hears the answer (when not, the server did the work all the same)."""
        return await _over_link(self.http, self.link, self.rng, method, path, ok, **kwargs)

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
            await self._upload(batch)
            try:
                response, heard = await self._exchange("POST", "/sync", json={
                    "edits": [made.edit for made in batch], "outbox": {
                        "device_id": self.device, "waiting": len(rest),
                        "oldest_device_time": rest[0].edit["device_time"] if rest else None,
                        "sent_at": (datetime.now(UTC) + self.skew).isoformat()}})
            except (Dropped, Refused) as exc:  # reached the server, and no results came back
                if isinstance(exc, Refused) or not isinstance(exc.__cause__, (
                        type(None), httpx.ConnectError)):
                    for made in batch:
                        made.answers.append(UNANSWERED)
                raise
            results = response.json()["results"]
            for made, result in zip(batch, results, strict=True):
                made.answers.append(result["status"])
            if not heard:
                raise Dropped
            for made, result in zip(batch, results, strict=True):
                self._settle(made, result)

    async def _upload(self, batch: list[Made]) -> None:
        """The batch's photos not yet uploaded, before the batch (field.js ``uploadPhotos``):
        PUT under their hash, 201 or 200 (already there: a re-send of one whose answer was
        lost)."""
        for made in batch:
            for digest in made.edit["changes"].get("photos", {}).get("new") or []:
                if digest in self.unsent:
                    _, heard = await self._exchange(
                        "PUT", f"/photos/{digest}", ok=(200, 201), content=self.unsent[digest],
                        headers={"Content-Type": "image/png"})
                    if not heard:
                        raise Dropped
                    del self.unsent[digest]

    def _settle(self, made: Made, result: dict[str, Any]) -> None:
        self.outbox.remove(made)
        self.settled += 1
        made.heard = result
        layer = made.edit["layer"]
        if layer == "cases":  # a case report or move: the answer is all the tablet keeps
            return
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
        try:
            while not (self.done and not self.outbox):
                await self.wake.wait()
                self.wake.clear()
                if self.online:
                    await self._retrying(self._round)
        except BaseException:
            self.broken = True
            raise

    def _finish(self) -> None:
        """One of the user's tasks is over; the sync task ends once all are."""
        self.users -= 1
        if self.users == 0:
            self.done = True
        self.wake.set()

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
        if not step.bad and self.knobs.photos and self.rng.random() < self.knobs.photos:
            new["photos"] = [*(fields.get("photos") or []), self._photo()][-MAX_PHOTOS:]
        edit["changes"] = {n: {"old": fields.get(n), "new": v} for n, v in new.items()}
        if "geometry" in new:
            edit["accuracy_m"] = round(self.rng.uniform(3, 15), 1)
        if feature is not None:  # known to the server (a new point learns it when answered)
            edit |= {"feature_id": feature.id, "base_version": feature.version}
        self._queue(Made(edit, key, feature.version if feature else None, step.bad))

    def _photo(self) -> str:
        """A photo taken now: PNG bytes, random so that each is new, kept until uploaded."""
        content = PNG + self.rng.randbytes(self.rng.randint(20_000, 60_000))
        digest = hashlib.sha256(content).hexdigest()
        self.photos.append(digest)
        self.unsent[digest] = content
        return digest

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
            self.online = True
            self._finish()

    # -- cases: report a few, handle what is dispatched to me -------------------------------

    @property
    def reported(self) -> bool:
        """Every report made and answered (or the tablet broke down)."""
        return self.broken or (self.reports >= self.knobs.cases and not any(
            m.edit["layer"] == "cases" and m.edit["op"] == "create" for m in self.outbox))

    async def _categories(self) -> None:
        response, heard = await self._exchange("GET", "/cases/categories")
        if not heard:
            raise Dropped
        self.categories = sorted(c["code"] for c in response.json()["categories"]
                                 if c["handler"] == "worker" and c.get("active", True))

    async def _dispatched_to_me(self, since: str) -> list[dict[str, Any]]:
        """The cases dispatched to me (reported since the run began), as GET /cases gives
        them to me."""
        found: list[dict[str, Any]] = []
        cursor: int | None = None
        while True:
            params = {"state": "dispatched", "assignee": self.user.name, "datetime": since,
                      "limit": "1000"} | ({"cursor": str(cursor)} if cursor else {})
            response, heard = await self._exchange("GET", "/cases", params=params)
            if not heard:
                raise Dropped
            body = response.json()
            found += body["features"]
            if not any(link["rel"] == "next" for link in body["links"]):
                return found
            cursor = found[-1]["id"]

    def _case_edit(self, op: str) -> dict[str, Any]:
        self.seq += 1
        device_time = (datetime.now(UTC) + self.skew).astimezone(SHANGHAI)
        return {"edit_id": str(uuid.uuid4()), "device_id": self.device, "device_seq": self.seq,
                "layer": "cases", "op": op, "device_time": device_time.isoformat(),
                "accuracy_m": round(self.rng.uniform(3, 15), 1)}

    def _report(self) -> None:
        """A case in my grid: exposed rubbish (at one of my waste points, now and then), or
        another category a worker handles; now and then placed outside my grids by mistake."""
        self.reports += 1
        edit = self._case_edit("create")
        area = self.area
        bad = self.rng.random() < P_CASE_BAD
        category = CASE_CATEGORY if self.rng.random() < 0.5 or not self.categories \
            else self.rng.choice(self.categories)
        changes: dict[str, Any] = {"category": category,
                                   "description": self.rng.choice(DESCRIBED)}
        points = sorted(key for key, f in self.features.items() if f.layer == "waste_points"
                        and f.grid in self.grids and area.contains(
                            shape(f.fields["geometry"])))
        if bad:
            _, y0, x1, y1 = area.bounds
            changes["geometry"] = {"type": "Point", "coordinates": [
                round(x1 + 0.002 + self.rng.uniform(0, 0.002), 7),
                round(self.rng.uniform(y0, y1), 7)]}
        elif category == CASE_CATEGORY and points and self.rng.random() < 0.5:
            point = self.features[self.rng.choice(points)]
            changes["feature"] = {"layer": point.layer, "id": point.id}
            changes["geometry"] = _moved(point.fields["geometry"], area, self.rng) \
                or point.fields["geometry"]
        else:
            changes["geometry"] = _somewhere(area, self.rng)
        if self.rng.random() < 0.1:
            changes["priority"] = "urgent"
        edit["changes"] = {name: {"new": value} for name, value in changes.items()}
        self._queue_case(Made(edit, f"local:{edit['edit_id']}", None, bad))

    def _handle(self, case: dict[str, Any]) -> None:
        """dispatched -> handled, from where the case is, on the version seen."""
        version = case["properties"]["version"]
        self.tried[case["id"]] = version
        edit = self._case_edit("transition")
        lon, lat = case["geometry"]["coordinates"]
        edit |= {"feature_id": case["id"], "base_version": version,
                 "reason": self.rng.choice(HANDLED), "changes": {
                     "state": {"old": "dispatched", "new": "handled"},
                     "position": {"new": {"lon": round(lon + self.rng.uniform(-5e-5, 5e-5), 7),
                                          "lat": round(lat + self.rng.uniform(-5e-5, 5e-5), 7)}}}}
        self._queue_case(Made(edit, _key("cases", case["id"]), version, False))

    def _queue_case(self, made: Made) -> None:
        self.outbox.append(made)
        self.case_made.append(made)
        self.wake.set()

    async def casework(self, since: str, dispatcher: Dispatcher) -> None:
        """The user's cases: its reports spread over the first part of the day; all along, a
        look at "my cases" every ``case_poll`` seconds or so (when online), and each case newly
        dispatched to me handled a moment later. Done once the reports are in, the
        dispatcher has finished, and nothing dispatched to me is left to handle."""
        try:
            await self._retrying(self._categories)
            loop = asyncio.get_running_loop()
            knobs = self.knobs
            begin, day = loop.time(), max(1.0, 0.8 * knobs.edits * knobs.think)
            due = sorted(self.rng.uniform(0, day) for _ in range(knobs.cases))
            while not self.broken:
                await asyncio.sleep(min([knobs.case_poll * self.rng.uniform(0.5, 1.5)]
                                        + [max(0.0, begin + at - loop.time())
                                           for at in due[self.reports:]]))
                while self.reports < knobs.cases and loop.time() >= begin + due[self.reports]:
                    self._report()
                if not self.online:
                    continue
                final = self.reported and dispatcher.finished.is_set()
                try:
                    mine = await self._dispatched_to_me(since)
                except (Dropped, Refused):
                    continue
                pending = {m.edit.get("feature_id") for m in self.outbox
                           if m.edit["layer"] == "cases" and m.edit["op"] == "transition"}
                fresh = [c for c in mine if c["id"] not in pending
                         and self.tried.get(c["id"]) != c["properties"]["version"]]
                for case in fresh:
                    await asyncio.sleep(self.rng.expovariate(1 / knobs.think))  # see to it
                    self._handle(case)
                if final and not fresh and not pending:
                    return
        finally:
            self._finish()


# ---------------------------------------------------------------------------------------
# The dispatcher: files and dispatches the cases as they come, sends some back

@dataclass
class Try:
    """One Idempotency-Key of a move: the status of each answer the server gave to it (heard
    or not), and the one the dispatcher heard with the reason it gave."""

    key: str
    answers: list[int] = field(default_factory=list)
    heard: int | None = None
    message: str | None = None


@dataclass
class Intent:
    """A move the dispatcher means to make: from a state to another, with one key per try
    (a new one only after a heard refusal, when the move still makes sense)."""

    case: int
    start: str
    to: str
    body: dict[str, Any]
    tries: list[Try] = field(default_factory=list)
    outcome: str = ""  # applied, moved on (re-read after a 412), refused <status>, gave up


class Dispatcher:
    """城运中心 staff at a desk, over a link that drops like the tablets': every case reported
    since the run began is filed then dispatched (the filing's proposed assignee confirmed);
    ``sendback`` of the dispatched ones are sent back to filed a few seconds later and
    dispatched again, so that the tablets' moves meet cases that moved on. Each move carries
    If-Match and an Idempotency-Key kept across retries; a 412 means read the case again
    and, if the move still makes sense, try again with a new key."""

    def __init__(self, user: User, token: str, url: str, rng: random.Random, since: str,
                 knobs: Knobs, watch: Watch | None = None) -> None:
        self.user = user
        self.rng = rng
        self.since = since
        self.knobs = knobs
        self.http = httpx.AsyncClient(base_url=url, timeout=knobs.timeout,
                                      limits=httpx.Limits(keepalive_expiry=4.0),
                                      headers={"Authorization": f"Bearer {token}"})
        self.device = "desk-dispatcher"
        self.link = Link(knobs.drop, watch)
        self.intents: list[Intent] = []
        self.rounds: Counter[int] = Counter()
        self.busy: set[int] = set()
        self.known: Counter[int] = Counter()  # the newest version of a case heard of
        self.sent_back: set[int] = set()
        self.desks = asyncio.Semaphore(DESKS)
        self.finished = asyncio.Event()
        self.failures: list[str] = []

    async def _exchange(self, method: str, path: str, **kwargs: Any
                        ) -> tuple[httpx.Response, bool]:
        return await _over_link(self.http, self.link, self.rng, method, path, None, **kwargs)

    async def _heard(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A read, retried with backoff until its answer is heard."""
        backoff = BACKOFF_START
        for _ in range(MAX_ATTEMPTS):
            try:
                response, heard = await self._exchange(method, path, **kwargs)
                if heard:
                    return response
            except (Dropped, Refused):
                pass
            await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
            backoff = min(BACKOFF_MAX, backoff * 2)
        raise GaveUp(f"dispatcher: {method} {path} {MAX_ATTEMPTS} times")

    async def _open(self) -> list[dict[str, Any]]:
        """The cases reported since the run began that are still to file or dispatch."""
        found: list[dict[str, Any]] = []
        cursor: int | None = None
        while True:
            params = {"state": "reported,filed", "datetime": self.since, "limit": "1000"} | (
                {"cursor": str(cursor)} if cursor else {})
            body = (await self._heard("GET", "/cases", params=params)).json()
            found += body["features"]
            if not any(link["rel"] == "next" for link in body["links"]):
                return found
            cursor = found[-1]["id"]

    async def _move(self, case: int, start: str, to: str, version: int,
                    reason: str | None = None) -> dict[str, Any] | None:
        """Move ``case`` from ``start`` to ``to``: the case as the move left it, or None when
        it was refused or the case had moved on."""
        body: dict[str, Any] = {"to": to, "device_id": self.device, "device_time": datetime.now(
            UTC).astimezone(SHANGHAI).isoformat()} | ({"reason": reason} if reason else {})
        intent = Intent(case, start, to, body)
        self.intents.append(intent)
        attempt = Try(str(uuid.uuid4()))
        intent.tries.append(attempt)
        backoff, failures = BACKOFF_START, 0
        while True:
            try:
                async with self.desks:
                    response, heard = await self._exchange(
                        "POST", f"/cases/{case}/transitions", json=body, headers={
                            "If-Match": f'"case-{case}-{version}"',
                            "Idempotency-Key": attempt.key})
                attempt.answers.append(response.status_code)
                if not heard:
                    raise Dropped
            except (Dropped, Refused):
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    intent.outcome = "gave up"
                    raise GaveUp(f"dispatcher: case {case} to {to}") from None
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            failures, backoff = 0, BACKOFF_START
            attempt.heard = response.status_code
            if response.status_code == 200:
                intent.outcome = "applied"
                after = dict(response.json())
                self._heard_of(after)
                return after
            refusal = response.json()
            attempt.message = str(refusal.get("description") or "") if refusal.get(
                "problems") else None  # a refusal names what is wrong
            if response.status_code != 412:
                intent.outcome = f"refused {response.status_code}"
                return None
            now = (await self._heard("GET", f"/cases/{case}")).json()
            self._heard_of(now)
            if now["properties"]["state"] != start:
                intent.outcome = "moved on"
                return None
            version = now["properties"]["version"]
            attempt = Try(str(uuid.uuid4()))
            intent.tries.append(attempt)

    def _heard_of(self, case: dict[str, Any]) -> None:
        self.known[case["id"]] = max(self.known[case["id"]], case["properties"]["version"])

    async def _take_up(self, case: dict[str, Any]) -> None:
        """File and dispatch one case; now and then send it back and dispatch it again."""
        cid, state = case["id"], case["properties"]["state"]
        version = case["properties"]["version"]
        try:
            for start, to in (("reported", "filed"), ("filed", "dispatched")):
                if state == start:
                    after = await self._move(cid, start, to, version)
                    if after is None:
                        return
                    state, version = after["properties"]["state"], after["properties"]["version"]
            if state != "dispatched" or cid in self.sent_back or \
                    self.rng.random() >= self.knobs.sendback:
                return
            self.sent_back.add(cid)
            await asyncio.sleep(self.knobs.case_poll * self.rng.uniform(0.3, 1.5))  # 2nd thoughts
            after = await self._move(cid, "dispatched", "filed", version, SENT_BACK)
            if after is None:
                return
            await asyncio.sleep(self.knobs.case_poll * self.rng.uniform(0.5, 2.0))  # right hands
            await self._move(cid, "filed", "dispatched", after["properties"]["version"])
        except GaveUp as exc:
            self.failures.append(str(exc))
        finally:
            self.busy.discard(cid)

    async def run(self, tablets: list[Tablet]) -> None:
        """Look for new cases every second or so until every tablet's reports are in and
        nothing is left to file or dispatch."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                reported = all(t.reported for t in tablets)
                try:
                    waiting = await self._open()
                except GaveUp as exc:
                    self.failures.append(str(exc))
                    return
                left = [c for c in waiting if self.rounds[c["id"]] < CASE_ROUNDS
                        and c["properties"]["version"] >= self.known[c["id"]]]  # not stale
                for case in left:
                    if case["id"] not in self.busy:
                        self.busy.add(case["id"])
                        self.rounds[case["id"]] += 1
                        task = asyncio.create_task(self._take_up(case))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                if reported and not left and not self.busy:
                    return
                await asyncio.sleep(self.rng.uniform(0.5, 1.5))
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            self.finished.set()


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
    for _ in range(tablet.knobs.edits):
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
    for _ in range(3 * tablet.knobs.edits if choices else 0):
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
    for args in (("db", "start"), ("db", "migrate"), ("sample", "--if-empty", "--cases", "0")):
        print("$ twin", *args, flush=True)
        subprocess.run([str(TWIN), *args], env=_env(), cwd=ROOT, check=True)  # noqa: S603
    if not JIT:  # as make bench's database: JIT compiles each call of twin.work_between, which
        # GET /cases makes per open case (2 s each on this machine: bench/README.md, soak)
        with psycopg.connect(_conninfo(), dbname="postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{DB}" SET jit = off')


def accounts(admin_url: str, knobs: Knobs, rng: random.Random
             ) -> tuple[list[tuple[User, str]], list[tuple[User, str]], tuple[User, str]]:
    """Tokens for ``knobs.tablets`` workers (all when there are fewer), ``knobs.supervisors``
    new accounts, commanders and admins by turns, and the sample's dispatcher."""
    engine = make_engine(admin_url, pool_size=2)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT u.id, u.name, u.role, array_agg(g.grid_code ORDER BY g.grid_code) "
                "FROM twin.users u JOIN twin.user_grids g ON g.user_id = u.id "
                "WHERE u.role = 'worker' AND u.name LIKE 'worker-%%' AND u.active "
                "GROUP BY u.id ORDER BY u.name").all()
            desk = conn.exec_driver_sql("SELECT id, name, role FROM twin.users "
                                        "WHERE name = 'dispatcher' AND active").one()
        workers = [User(r[0], r[1], r[2], tuple(r[3])) for r in rows]
        workers = sorted(rng.sample(workers, min(knobs.tablets, len(workers))),
                         key=lambda u: u.name)
        secret = hash_password(PASSWORD)
        supervisors = [add_user(engine, f"supervisor-{i + 1}", ("commander", "admin")[i % 2],
                                secret) for i in range(knobs.supervisors)]
        dispatcher = User(desk[0], desk[1], desk[2], ())
        return ([(u, issue_token(engine, u, 720)[0]) for u in workers],
                [(u, issue_token(engine, u, 720)[0]) for u in supervisors],
                (dispatcher, issue_token(engine, dispatcher, 720)[0]))
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------
# The run

async def run_day(url: str, workers: list[tuple[User, str]],
                  supervisors: list[tuple[User, str]], desk: tuple[User, str],
                  rng: random.Random, knobs: Knobs, watch: Watch | None = None,
                  started: asyncio.Event | None = None
                  ) -> tuple[list[Tablet], Dispatcher, str, Counter[str], float]:
    """Scopes first (every tablet starts its day with them), then plans, then the day: the
    users' edits, the workers' cases and the dispatcher's moves; ``watch`` is told of every
    request the links did not lose, ``started`` set when the day begins."""
    grids = [code for user, _ in workers for code in user.grids]
    tablets = [Tablet(user, token, url, user.grids, random.Random(rng.random()),  # noqa: S311
                      knobs, watch) for user, token in workers]
    tablets += [Tablet(user, token, url, tuple(grids[i::len(supervisors)]),
                       random.Random(rng.random()), knobs, watch)  # noqa: S311
                for i, (user, token) in enumerate(supervisors)]
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ") + "/.."
    dispatcher = Dispatcher(desk[0], desk[1], url, random.Random(rng.random()),  # noqa: S311
                            since, knobs, watch)
    try:
        await asyncio.gather(*(t.start() for t in tablets))
        hot: dict[str, set[str]] = {}
        for tablet in tablets[:len(workers)]:
            hot |= _worker_plan(tablet, tablet.rng)
        overlap: Counter[str] = Counter()
        for tablet in tablets[len(workers):]:
            overlap += _supervisor_plan(tablet, hot, tablet.rng)
        reporters = tablets[:len(workers)] if knobs.cases > 0 else []
        for tablet in reporters:
            tablet.users += 1
        if started is not None:
            started.set()
        start = time.perf_counter()
        done = await asyncio.gather(*(task for t in tablets for task in (
            t.using(knobs.think if t.user.role == "worker" else knobs.think / 3),
            t.syncing())),
            *(t.casework(since, dispatcher) for t in reporters), dispatcher.run(reporters),
            return_exceptions=True)
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(t.http.aclose() for t in tablets), dispatcher.http.aclose())
    for failure in done:
        if isinstance(failure, BaseException):
            print(f"a tablet failed: {failure!r}", file=sys.stderr)
            overlap["tablets failed"] += 1
    for why in dispatcher.failures:
        print(f"the dispatcher failed: {why}", file=sys.stderr)
        overlap["dispatcher failed"] += 1
    return tablets, dispatcher, since, overlap, wall


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


def audit(conninfo: str, tablets: list[Tablet]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Every edit a device made against twin.edits and twin.changes, every photo it took
    against twin.photos: figures, and the failures (each with examples)."""
    made = {(t.user.name, m.edit["edit_id"]): m for t in tablets for m in t.made}
    taken = {digest: t for t in tablets for digest in t.photos}
    with psycopg.connect(conninfo) as conn:
        edits = {(r[0], r[1]): r[2:] for r in conn.execute(
            "SELECT actor, edit_id, status, version, feature_id, layer, base_version, "
            "ARRAY(SELECT jsonb_object_keys(coalesce(result -> 'fields', '{}'))) "
            "FROM twin.edits WHERE layer <> 'cases'")}
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
        kept = {r[0] for r in conn.execute(
            "SELECT sha256 FROM twin.photos WHERE sha256 = ANY(%s)", [list(taken)])}
    fail: dict[str, list[Any]] = {k: [] for k in (
        "lost", "logged twice or both", "overwritten without conflict",
        "answer contradicts the log", "duplicates not as expected", "valid edit rejected",
        "invalid edit applied", "device time altered", "phantom edits",
        "outbox reported waiting after the last sync", "photo lost")}
    # an upload answered (201 or 200) is a photo stored; one still unsent never left the tablet
    fail["photo lost"] = [{"edit": digest, "actor": t.user.name} for digest, t in taken.items()
                          if digest not in kept and digest not in t.unsent]
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
        if not _answered_as_expected(m.answers):
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


def _answered_as_expected(answers: list[str]) -> bool:
    """A retry is answered ``duplicate``; the first answer heard is one only when a delivery
    before it went unanswered (a 5xx or a broken connection: it may have been applied)."""
    heard = [a for a in answers if a != UNANSWERED]
    if not heard:
        return True
    first = answers.index(heard[0])  # the markers come before it
    return all(a == "duplicate" for a in heard[1:]) and (heard[0] != "duplicate" or first > 0)


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


CASE_FAILURES = ("case lost", "case applied twice", "case refused yet in the events",
                 "case refused without a reason", "case answer contradicts the log",
                 "case event not as sent", "case duplicates not as expected",
                 "valid case report rejected", "invalid case report applied",
                 "case edit_id twice in the events", "case phantom events",
                 "case versions and events disagree")


def audit_cases(conninfo: str, tablets: list[Tablet], dispatcher: Dispatcher, since: str
                ) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Every case report and move of the tablets, and every try of the dispatcher's moves,
    against twin.edits (layer cases) and twin.case_events (by edit_id): figures, and the
    failures (each with examples, named by the edit_id)."""
    began = datetime.fromisoformat(since.partition("/")[0].replace("Z", "+00:00"))
    actors = [t.user.name for t in tablets] + [dispatcher.user.name]
    with psycopg.connect(conninfo) as conn:
        edits = {(r[0], r[1]): r[2:] for r in conn.execute(
            "SELECT actor, edit_id, status, feature_id, jsonb_array_length(problems) "
            "FROM twin.edits WHERE layer = 'cases' AND actor = ANY(%s)", [actors])}
        events = {r[0]: r[1:] for r in conn.execute(
            "SELECT edit_id, count(*), array_agg(case_id), array_agg(action), "
            "array_agg(to_state), array_agg(actor) FROM twin.case_events "
            "WHERE edit_id IS NOT NULL GROUP BY 1")}
        ours = conn.execute(
            "SELECT e.edit_id, e.case_id, e.action, e.actor FROM twin.case_events e "
            "WHERE e.server_time >= %s AND e.actor = ANY(%s)", [began, actors]).fetchall()
        cases = conn.execute(
            "SELECT c.id, c.state, c.version, c.assignee, count(e.id), max(e.version), "
            "count(DISTINCT e.version) FROM twin.cases c JOIN twin.case_events e "
            "ON e.case_id = c.id WHERE c.reported_at >= %s GROUP BY c.id", [began]).fetchall()
    fail: dict[str, list[Any]] = {k: [] for k in CASE_FAILURES}
    fail["case edit_id twice in the events"] = [
        {"edit": edit_id, "events": row[0], "cases": row[1], "actions": row[2]}
        for edit_id, row in events.items() if row[0] > 1]
    fail["case versions and events disagree"] = [
        {"edit": f"case {r[0]}", "version": r[2], "events": r[4], "highest": r[5],
         "distinct": r[6]} for r in cases if not r[2] == r[4] == r[5] == r[6]]
    figures: Counter[str] = Counter()
    figures.update(f"cases now {r[1]}" for r in cases)
    figures["cases dispatched to no tablet"] = sum(
        1 for r in cases if r[1] == "dispatched" and r[3] not in actors)
    known: set[str] = set()
    for tablet in tablets:
        for m in tablet.case_made:
            edit_id, op = m.edit["edit_id"], m.edit["op"]
            known.add(edit_id)
            kind = "report" if op == "create" else "move"
            figures[f"tablet {kind}s"] += 1
            example = {"edit": edit_id, "actor": tablet.user.name, "sent": m.edit,
                       "answers": m.answers, "heard": m.heard}
            figures["duplicates answered"] += m.answers.count("duplicate")
            if not _answered_as_expected(m.answers):
                fail["case duplicates not as expected"].append(example)
            row = edits.get((tablet.user.name, edit_id))
            n, where, actions, states, who = events.get(edit_id, (0, [], [], [], []))
            if row is None:
                fail["case lost"].append(example | {"why": "not in twin.edits"})
                continue
            status, fid, problems = row
            figures[f"tablet {kind}s {status}"] += 1
            heard = m.heard or {}
            said = heard.get("status")
            if said == "duplicate":
                said = ("conflict" if heard.get("conflict") is not None
                        else "rejected" if heard.get("problems") else "applied")
            if said != status:
                fail["case answer contradicts the log"].append(example | {"log": status})
            if status in ("conflict", "rejected"):
                if n:
                    fail["case refused yet in the events"].append(example | {"events": n})
                if not problems or not heard.get("problems"):
                    fail["case refused without a reason"].append(example)
                if status == "rejected" and op == "create" and not m.bad:
                    fail["valid case report rejected"].append(example)
                continue
            if m.bad:
                fail["invalid case report applied"].append(example)
            if n == 0:
                fail["case lost"].append(example | {"why": f"{status}, yet no event"})
            elif n > 1:
                fail["case applied twice"].append(example | {"events": n})
            elif (actions[0], states[0], who[0]) != (
                    ("report", "reported", tablet.user.name) if op == "create"
                    else ("transition", "handled", tablet.user.name)) or where[0] != fid or (
                    op == "transition" and fid != m.edit["feature_id"]):
                fail["case event not as sent"].append(example | {
                    "event": [where[0], actions[0], states[0], who[0]], "log case": fid})
    for intent in dispatcher.intents:
        figures["dispatcher moves"] += 1
        figures[f"dispatcher moves {intent.outcome.split(' ')[0]}"] += 1
        figures[f"dispatcher moves to {intent.to}"] += 1
        for attempt in intent.tries:
            known.add(attempt.key)
            figures["dispatcher keys"] += 1
            figures["dispatcher 412s"] += attempt.heard == 412
            figures["dispatcher retries answered"] += max(0, len(attempt.answers) - 1)
            example = {"edit": attempt.key, "actor": dispatcher.user.name, "case": intent.case,
                       "move": f"{intent.start} -> {intent.to}", "answers": attempt.answers,
                       "heard": attempt.heard, "message": attempt.message}
            if len(set(attempt.answers)) > 1:
                fail["case duplicates not as expected"].append(example)
            row = edits.get((dispatcher.user.name, attempt.key))
            n, where, actions, states, _ = events.get(attempt.key, (0, [], [], [], []))
            if attempt.heard is None:  # given up on: whatever the server did is one or none
                if n > 1:
                    fail["case applied twice"].append(example | {"events": n})
                continue
            if row is None:
                fail["case lost"].append(example | {"why": "not in twin.edits"})
                continue
            if (attempt.heard == 200) != (row[0] == "applied"):
                fail["case answer contradicts the log"].append(example | {"log": row[0]})
            if attempt.heard != 200:
                if n:
                    fail["case refused yet in the events"].append(example | {"events": n})
                if not attempt.message or not row[2]:
                    fail["case refused without a reason"].append(example)
            elif n == 0:
                fail["case lost"].append(example | {"why": "answered 200, yet no event"})
            elif n > 1:
                fail["case applied twice"].append(example | {"events": n})
            elif (where[0], actions[0], states[0]) != (intent.case, "transition", intent.to):
                fail["case event not as sent"].append(example | {
                    "event": [where[0], actions[0], states[0]]})
    fail["case phantom events"] = [
        {"edit": r[0], "case": r[1], "action": r[2], "actor": r[3]}
        for r in ours if r[0] not in known]
    figures["cases sent back"] = len(dispatcher.sent_back)
    return dict(figures), fail


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def tally(fail: dict[str, list[Any]]) -> dict[str, int]:
    """Each check's failures, counted once per edit (or case, device, photo)."""
    return {k: len({e["edit"] for e in v}) for k, v in fail.items()}


def main() -> int:
    knobs = Knobs.from_env()
    rng = random.Random(knobs.seed)  # noqa: S311 (a repeatable run, not a secret)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    began = time.perf_counter()
    _prepare()
    workers, supervisors, desk = accounts(database_urls(Settings(db_name=DB)).admin, knobs, rng)
    server, url = serve_twin(_env(), OUT / f"{stamp}.server.log")
    try:
        print(f"{len(workers)} worker tablets and {len(supervisors)} supervisors' tablets, "
              f"{knobs.edits} edits each (supervisors {3 * knobs.edits}), {knobs.cases} case "
              f"reports per worker and a dispatcher, drops {knobs.drop:.0%} each way",
              flush=True)
        tablets, dispatcher, since, overlap, wall = asyncio.run(
            run_day(url, workers, supervisors, desk, rng, knobs))
        figures, fail = audit(_conninfo(), tablets)
        case_figures, case_fail = audit_cases(_conninfo(), tablets, dispatcher, since)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still busy with a request: no graceful end
            server.kill()
            server.wait(timeout=30)
        if not KEEP_DB:
            _drop()
    made = sum(len(t.made) for t in tablets)
    trips = [s * 1000 for t in tablets for s in t.link.round_trips]
    links = [t.link for t in tablets] + [dispatcher.link]
    link = {k: sum(getattr(one, k) for one in links)
            for k in ("requests", "lost_requests", "lost_answers", "server_errors")}
    failures = tally(fail | case_fail)
    cf = case_figures
    cases = {
        "per_tablet": knobs.cases, "sendback": knobs.sendback, "poll_s": knobs.case_poll,
        "reported": cf.get("tablet reports", 0),
        "reports_applied": cf.get("tablet reports applied", 0),
        "reports_rejected": cf.get("tablet reports rejected", 0),
        "moves_sent": cf.get("tablet moves", 0),
        "moves_applied": cf.get("tablet moves applied", 0),
        "moves_conflict": cf.get("tablet moves conflict", 0),
        "moves_rejected": cf.get("tablet moves rejected", 0),
        "dispatcher_moves": cf.get("dispatcher moves", 0),
        "dispatcher_keys": cf.get("dispatcher keys", 0),
        "dispatcher_applied": cf.get("dispatcher moves applied", 0),
        "dispatcher_412": cf.get("dispatcher 412s", 0),
        "dispatcher_moved_on": cf.get("dispatcher moves moved", 0),
        "dispatcher_refused": cf.get("dispatcher moves refused", 0),
        "sent_back": cf.get("cases sent back", 0),
        "lost": failures["case lost"],
        "applied_twice": failures["case applied twice"] + failures[
            "case refused yet in the events"] + failures["case edit_id twice in the events"],
        "final_states": {k.removeprefix("cases now "): v for k, v in sorted(cf.items())
                         if k.startswith("cases now ")},
        "figures": cf,
    }
    overwrites = fail["overwritten without conflict"]
    result = {
        "stamp": stamp, "db": DB, "drop": knobs.drop, "think_s": knobs.think,
        "seed": knobs.seed, "jit": JIT, "photos": len({p for t in tablets for p in t.photos}),
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
        "link": link, "dispatcher_link": {
            k: getattr(dispatcher.link, k)
            for k in ("requests", "lost_requests", "lost_answers", "server_errors")},
        "cases": cases, "figures": figures, "overlap": dict(overlap),
        "total_s": round(time.perf_counter() - began, 1),
        "failures": failures,
        "overwritten_by_check": {check: len({e["edit"] for e in overwrites if e["check"] == check})
                                 for check in {e["check"] for e in overwrites}},
        "overwritten_after_rebase": len({e["edit"] for e in overwrites if e.get("rebased")}),
        "examples": {k: v[:10] for k, v in (fail | case_fail).items() if v},
        "errors": [e for one in links for e in one.errors][:50],
    }
    path = OUT / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    _print(result, path)
    bad = [k for k, v in failures.items() if v] + [k for k, v in (
        ("5xx answers", link["server_errors"]), ("tablets failed", overlap["tablets failed"]),
        ("dispatcher failed", overlap["dispatcher failed"])) if v]
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
                                                        "conflict", "case lost")) or "0"),
        ("5xx answers", f"{r['link']['server_errors']}"),
        ("requests / lost / answers lost",
         f"{r['link']['requests']:,} / {r['link']['lost_requests']:,} / "
         f"{r['link']['lost_answers']:,}"),
        ("wall time", f"{r['wall_s']:.1f} s"),
        ("edits/s", f"{r['edits_per_s']:.1f}"),
        ("/sync round trip p50 / p99", f"{r['sync_p50_ms']:.0f} / {r['sync_p99_ms']:.0f} ms"),
        ("/sync requests", f"{r['syncs']:,}, {r['edits_per_sync']} edits each"),
    ]
    c = r["cases"]
    if c["reported"] or c["dispatcher_moves"]:
        rows += [
            ("cases reported (tablets)", f"{c['reported']:,}: {c['reports_applied']:,} applied, "
             f"{c['reports_rejected']} rejected (all meant to be: "
             f"{'yes' if not r['failures']['valid case report rejected'] else 'NO'})"),
            ("case moves sent (tablets)", f"{c['moves_sent']:,}: {c['moves_applied']:,} "
             f"applied, {c['moves_conflict']} conflicts, {c['moves_rejected']} rejected"),
            ("dispatcher moves", f"{c['dispatcher_moves']:,} ({c['dispatcher_keys']:,} keys): "
             f"{c['dispatcher_applied']:,} applied, {c['dispatcher_412']} answered 412, "
             f"{c['dispatcher_moved_on']} moved on, {c['dispatcher_refused']} refused; "
             f"{c['sent_back']} sent back"),
            ("cases lost / applied twice", f"{c['lost']} / {c['applied_twice']}"),
            ("cases at the end", ", ".join(f"{k} {v}" for k, v in c["final_states"].items())),
        ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(f"results: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
