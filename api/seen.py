"""The versions each token was given: the base of a feature edit that names none.

QGIS (its OGC API - Features provider, 3.36 and later) edits without ``If-Match``: it saves
an attribute change as ``PATCH`` with ``{"properties": {...the changed ones}}``, a geometry
as ``PATCH`` with ``{"geometry": ...}`` (``application/merge-patch+json``, and
``Content-Crs`` when the layer is read in another CRS), or as a whole-feature ``PUT`` when
``OPTIONS`` lists no PATCH, and a deletion as a bare ``DELETE``; no request carries a version
(qgis/QGIS src/providers/wfs/oapif/qgsoapifpatchfeaturerequest.cpp,
qgsoapifputfeaturerequest.cpp, and deleteFeatures in qgsoapifprovider.cpp). What it edits is
what it downloaded with the same token. So for the roles of ``TWIN_IMPLICIT_IF_MATCH_ROLES``
an edit without ``If-Match`` is based on the newest version of the feature that token was
given, by a read (a page of items, the feature) or by its own edit: a change by anyone else
since is still a 412, never overwritten.

The newest, not the last read: a page read while the token's own edit commits may bring the
version before it, after it. Kept in this process's memory (a read costs a dictionary update,
and nothing for other roles): a restart, or another process, has not seen the read, and the
edit is a 428 asking for one, never an edit on a guessed base.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

# (feature, version) pairs kept at once, about 75 MB: beyond, the least recently used
# tokens' go first (their next edit without If-Match is a 428 until they read again)
_MAX_PAIRS = 1_000_000


class SeenVersions:
    """Per bearer token (its digest) and layer, the newest version of each feature it was
    given."""

    def __init__(self, roles: Iterable[str]) -> None:
        """``roles``: those whose tokens' reads are kept and whose edits may leave out
        ``If-Match``."""
        self.roles = frozenset(roles)
        self._tokens: OrderedDict[str, dict[str, dict[int, int]]] = OrderedDict()
        self._pairs = 0

    def kept_for(self, role: str) -> bool:
        return role in self.roles

    def saw(self, role: str, token: str, layer: str,
            versions: Iterable[Sequence[int]] | None) -> None:
        """The token was given these (feature id, version) of ``layer``; kept for its role's
        tokens only."""
        if not versions or not self.kept_for(role):
            return
        seen = self._tokens.setdefault(token, {}).setdefault(layer, {})
        self._tokens.move_to_end(token)
        before = len(seen)
        for fid, version in versions:
            if seen.get(fid, 0) < version:
                seen[fid] = version
        self._pairs += len(seen) - before
        while self._pairs > _MAX_PAIRS and len(self._tokens) > 1:
            _, forgotten = self._tokens.popitem(last=False)
            self._pairs -= sum(map(len, forgotten.values()))

    def version(self, token: str, layer: str, fid: int) -> int | None:
        """The newest version of the feature the token was given; None: it was given none."""
        return self._tokens.get(token, {}).get(layer, {}).get(fid)
