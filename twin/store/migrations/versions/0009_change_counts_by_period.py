"""Change counts partitioned by period, so whole-month reports read monthly rows only.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0009_change_counts_by_period"))


def downgrade() -> None:
    op.execute("ALTER TABLE twin.change_counts RENAME TO change_counts_0009")
    op.execute("ALTER TABLE twin.change_counts_0009 RENAME CONSTRAINT change_counts_key "
               "TO change_counts_0009_key")
    op.execute("CREATE TABLE twin.change_counts (LIKE twin.change_counts_0009 INCLUDING DEFAULTS "
               "INCLUDING CONSTRAINTS)")
    op.execute("ALTER TABLE twin.change_counts ADD CONSTRAINT change_counts_key UNIQUE NULLS "
               "NOT DISTINCT (period, day, layer, grid_code, area_code, actor, role, operation, "
               "state_from, state_to)")
    op.execute("INSERT INTO twin.change_counts SELECT * FROM twin.change_counts_0009")
    op.execute("DROP TABLE twin.change_counts_0009")
