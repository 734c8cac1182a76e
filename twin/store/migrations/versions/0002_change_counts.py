"""Change counts per local day and month, kept by a trigger on the log, for period reports.

The counts are made (and, for an existing log, backfilled) by
``twin.configure_change_counts``, which ``twin.store.migrate`` calls in this same transaction: the
time zone comes from the settings and each layer's state field from ``layers/``, neither of
which a migration should freeze.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0002_change_counts"))


def downgrade() -> None:
    op.execute("DROP TRIGGER changes_count ON twin.changes")
    op.execute("DROP VIEW twin.change_facts")
    op.execute("DROP FUNCTION twin.count_changes(), twin.configure_change_counts(text, jsonb), "
               "twin.add_counts(bigint[]), twin.change_day(timestamptz, text), "
               "twin.day_start(date, text), twin.grant_app(text)")
    op.execute("ALTER FUNCTION twin.grant_app_0001(text) RENAME TO grant_app")
    op.execute("DROP TABLE twin.change_counts, twin.change_counts_basis")
