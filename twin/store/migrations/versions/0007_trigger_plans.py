"""History triggers plan index lookups however new the tables were when first planned.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0007_trigger_plans"))


def downgrade() -> None:
    for function in ("features_before()", "features_after()", "add_counts(bigint[])"):
        op.execute(f"ALTER FUNCTION twin.{function} RESET enable_seqscan RESET jit")
