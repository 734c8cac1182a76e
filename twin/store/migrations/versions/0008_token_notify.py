"""Tell listening servers when tokens or users change, so they may cache token roles.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0008_token_notify"))


def downgrade() -> None:
    op.execute("DROP TRIGGER tokens_notify ON twin.tokens")
    op.execute("DROP TRIGGER users_notify ON twin.users")
    op.execute("DROP FUNCTION twin.notify_tokens()")
