"""Finished months of versions sorted by place and then by when each version began.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0012_versions_sorted_by_place_and_time"))


def downgrade() -> None:
    # the months keep the new order until sorted the old way; the old function and view back
    old = sql("0010_versions_by_closing_month")
    start = old.index("-- The months that are over and not yet sorted by place.")
    end = old.index("-- A month of a busy twin")
    op.execute(old[start:end].replace("CREATE VIEW", "CREATE OR REPLACE VIEW")
               .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
