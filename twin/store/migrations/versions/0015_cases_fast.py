"""Case figures without loops over the calendar: working seconds before each day, when a case
last changed, each move's hours in its stage.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

LIVE_FUNCTIONS = ("twin.fill_work_days()", "twin.work_days_stale()",
                  "twin.work_seconds(timestamptz)")


def upgrade() -> None:
    op.execute(sql("0015_cases_fast"))


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS " + ", ".join(LIVE_FUNCTIONS) + " CASCADE")
    op.execute("ALTER TABLE twin.case_events DROP COLUMN stage_hours")
    op.execute("ALTER TABLE twin.cases DROP COLUMN changed_at")
    op.execute("DROP TABLE twin.work_days")
