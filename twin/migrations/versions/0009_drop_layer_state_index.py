"""Drop the (layer, id) index of the change log: pages no longer ask for a layer's newest change.

0004 made it for the page ETag, which now digests the page's own (id, version) rows; every
change paid for the index and nothing reads it (the feed filters by (layer, tx, id)).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX twin.changes_layer_state_idx")


def downgrade() -> None:
    op.execute("CREATE INDEX changes_layer_state_idx ON twin.changes (layer, id)")
