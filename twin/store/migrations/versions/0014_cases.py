"""Cases (一网统管): their rules as data, the lifecycle, events; roles dispatcher and department.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# the live definitions (twin/store/sql/live/) that need this revision's tables
LIVE_FUNCTIONS = ("twin.cases_before()", "twin.cases_after()", "twin.log_rules()",
                  "twin.case_route(text, text, text)", "twin.add_work(timestamptz, text)",
                  "twin.work_between(timestamptz, timestamptz)", "twin.working_day(date)",
                  "twin.case_snapshot(twin.cases)")


def upgrade() -> None:
    op.execute(sql("0014_cases"))


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS " + ", ".join(LIVE_FUNCTIONS) + " CASCADE")
    # received case edits go with the cases (the only deletion that table ever sees)
    op.execute("ALTER TABLE twin.edits DISABLE TRIGGER edits_no_delete")
    op.execute("DELETE FROM twin.edits WHERE layer = 'cases'")
    op.execute("ALTER TABLE twin.edits ENABLE TRIGGER edits_no_delete")
    op.execute("ALTER TABLE twin.edits DROP CONSTRAINT edits_op_check")
    op.execute("ALTER TABLE twin.edits ADD CONSTRAINT edits_op_check CHECK (op IN "
               "('create', 'update', 'replace', 'delete'))")
    op.execute("ALTER TABLE twin.users DROP CONSTRAINT users_department")
    op.execute("ALTER TABLE twin.users DROP COLUMN department")
    op.execute("ALTER TABLE twin.users DROP CONSTRAINT users_role_check")
    op.execute("ALTER TABLE twin.users ADD CONSTRAINT users_role_check CHECK (role IN "
               "('worker', 'planner', 'commander', 'admin'))")
    op.execute("DROP TABLE twin.case_events, twin.cases, twin.case_transitions, "
               "twin.rule_changes, twin.case_rules, twin.work_periods, twin.calendar_days, "
               "twin.case_categories, twin.squads, twin.departments")
