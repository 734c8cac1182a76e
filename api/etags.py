"""Entity tags, written and compared in one place (RFC 9110 §8.8.3 and §13.1).

A feature's ETag names its version, and the CRS when its coordinates are not CRS84: a strong
ETag names one representation, so the same version read in EPSG:4326 has an ETag of its own
(``If-None-Match`` must not answer 304 to a client holding the other CRS's bytes). An edit is
based on a version, not on bytes, so ``If-Match`` accepts the ETag of any representation of it.

``If-Match`` uses the strong comparison (§13.1.1): a weak ETag (``W/"..."``, as a proxy may
make of an ETag when it compresses) never matches, and the 412 says so. ``If-None-Match``
uses the weak comparison (§13.1.2): ``W/"x"`` matches ``"x"``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from starlette.requests import Request

from twin.crs import CRS84, SUPPORTED, Crs
from twin.errors import PreconditionFailed, PreconditionRequired, Problem
from twin.features.edits import etag as version_etag

# an entity-tag: optional W/, then a quoted opaque string (which may hold commas)
_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')
# "<id>-<version>", or "<id>-<version>-<srid>" for a supported CRS other than CRS84
FEATURE_ETAG = re.compile(r'"(\d+)-(\d+)(?:-(?:{}))?"'.format("|".join(sorted(
    {str(crs.srid) for crs in SUPPORTED.values() if crs is not CRS84}))))


class EntityTag(NamedTuple):
    weak: bool
    tag: str  # the quoted opaque string, quotes included


def feature_etag(fid: int, version: int, crs: Crs = CRS84) -> str:
    """The strong ETag of a feature version as read in ``crs``."""
    tag = version_etag(fid, version)
    return tag if crs is CRS84 else f'{tag[:-1]}-{crs.srid}"'


def entity_tags(header: str) -> list[EntityTag] | None:
    """The entity-tags of an ``If-Match``/``If-None-Match`` value; None for ``*`` (any);
    what cannot be read as an entity-tag is left out (it matches nothing)."""
    if header.strip() == "*":
        return None
    return [EntityTag(bool(found.group(1)), found.group(2)) for found in _TAG.finditer(header)]


def not_modified(request: Request, etag: str) -> bool:
    """``If-None-Match`` holds ``etag`` (weak comparison) or is ``*``: answer 304."""
    asked = request.headers.get("if-none-match")
    if asked is None:
        return False
    tags = entity_tags(asked)
    return tags is None or any(found.tag == etag.removeprefix("W/") for found in tags)


def based_on(request: Request, etag: re.Pattern[str], number: int | str, what: str,
             what_zh: str, shape: str) -> int:
    """The version ``If-Match`` names of the thing ``what`` numbered ``number`` (its ETags
    matching ``etag``, whose groups are the number and the version, printed as ``shape``):
    428 without one (``*`` too: an edit must say which version it changes), 412 when no
    strong ETag in it names this thing. The first that does is the base of the edit."""
    asked = request.headers.get("if-match")
    tags = entity_tags(asked) if asked is not None else None
    if asked is None or tags is None:
        raise PreconditionRequired(
            f"say which version of the {what} you change: If-Match with the ETag of your read",
            [Problem("If-Match", asked, "required: the ETag of the version you read",
                     "须提供 If-Match(所读版本的 ETag)")])
    weak = False
    for found in tags:
        named = etag.fullmatch(found.tag)
        if named is None or named.group(1) != str(number):
            continue
        if not found.weak:
            return int(named.group(2))
        weak = True
    if weak:
        raise PreconditionFailed(
            f"If-Match {asked} is a weak ETag: If-Match compares strongly (RFC 9110 "
            f"§13.1.1), so it never matches; send the ETag as Twin gave it, without W/",
            [Problem("If-Match", asked, f"a strong ETag: {shape}, without W/",
                     "If-Match 须为强 ETag(不带 W/),弱 ETag 永不匹配")])
    raise PreconditionFailed(f"If-Match {asked} does not name a version of {what} {number}",
                             [Problem("If-Match", asked, f"expected {shape}",
                                      f"If-Match 与该{what_zh}不符")])
