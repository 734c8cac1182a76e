"""Real data in: a feature's id in its source file, imports as rows, their id on each change.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0017_imports"))


def downgrade() -> None:
    op.execute("ALTER TABLE twin.changes DROP COLUMN import_id")
    op.execute("DROP TABLE twin.imports")
    op.execute("ALTER TABLE twin.feature_versions DROP COLUMN source_id")
    op.execute("ALTER TABLE twin.features DROP COLUMN source_id")
