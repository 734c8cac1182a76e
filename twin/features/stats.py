"""What the twin holds: features per layer, changes, and a content hash for reproducibility."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from twin.store.sqlfiles import sql


def stats(engine: Engine) -> dict[str, Any]:
    """Counts per layer (every registered layer, empty ones too) and the content hash."""
    with engine.connect() as conn:
        layers = {row.name: row.n for row in conn.execute(text(
            "SELECT l.name, (SELECT count(*) FROM twin.features f WHERE f.layer = l.name) AS n "
            "FROM twin.layers l ORDER BY l.name"))}
        changes = conn.execute(text("SELECT count(*) FROM twin.changes")).scalar_one()
        digest = conn.execute(text(sql("content_hash"))).scalar_one()
        meta = {row.key: row.value for row in conn.execute(
            text("SELECT key, value FROM twin.metadata ORDER BY key"))}
    return {"layers": layers, "features": sum(layers.values()), "changes": changes,
            "content_hash": digest, "metadata": meta}
