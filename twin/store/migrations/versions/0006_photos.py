"""Photos of field edits: stored once by content hash, never changed nor removed.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0006_photos"))


def downgrade() -> None:
    op.execute("DROP TABLE twin.photos")
    op.execute("DROP FUNCTION twin.grant_app(text)")
    op.execute("ALTER FUNCTION twin.grant_app_0005(text) RENAME TO grant_app")
