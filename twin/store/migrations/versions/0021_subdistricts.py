"""Subdistricts as a dimension: a code on every feature, version, change, case, order and
user.

Revision ID: 0021
Revises: 0020
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0021_subdistricts"))


def downgrade() -> None:
    # the older code's `twin db migrate` brings back the triggers without the code
    for table in ("users", "orders", "cases", "changes", "feature_versions", "features"):
        op.execute(f"ALTER TABLE twin.{table} DROP COLUMN subdistrict_code")
