"""Received edits: retried edits answered once, conflicts and rejections kept.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0005_edits"))


def downgrade() -> None:
    op.execute("DROP TABLE twin.edits")
    op.execute("DROP FUNCTION twin.edits_resolve_only(), twin.grant_app(text)")
    op.execute("ALTER FUNCTION twin.grant_app_0002(text) RENAME TO grant_app")
