"""The newest change of a layer by an index: every page's ETag asks for it.

``max(id) WHERE layer = ...`` had only the feed's (layer, tx, id) index, so PostgreSQL walked
the primary key backwards past every newer change of other layers (tens of ms on a large log).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX changes_layer_state_idx ON twin.changes (layer, id)")


def downgrade() -> None:
    op.execute("DROP INDEX twin.changes_layer_state_idx")
