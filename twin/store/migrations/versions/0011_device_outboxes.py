"""What each tablet last reported still waiting in its outbox: sync health on the board.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0011_device_outboxes"))


def downgrade() -> None:
    op.execute("DROP TABLE twin.device_outboxes")
    op.execute("DROP FUNCTION twin.grant_app(text)")
    op.execute("ALTER FUNCTION twin.grant_app_0010(text) RENAME TO grant_app")
