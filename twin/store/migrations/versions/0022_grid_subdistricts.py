"""A subdistrict's micro-grids found by its code.

Revision ID: 0022
Revises: 0021
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0022_grid_subdistricts"))


def downgrade() -> None:
    op.execute("DROP INDEX twin.features_grid_subdistrict_idx")
