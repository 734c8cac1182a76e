"""The twin's schema, history triggers and append-only change log.

Revision ID: 0001
Revises:
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0001_schema"))
    op.execute(sql("0001_history"))


def downgrade() -> None:
    # Dropping the schema is the only way history goes: on purpose, by the database owner.
    op.execute("DROP SCHEMA twin CASCADE")
