"""Cheaper history triggers: twin.clock() and twin.fields() inlined by the planner, and a
feature that did not move keeps its micro-grid and residential area unless twin.reassign
asks for them again.

Revision ID: 0003
Revises: 0002
"""

import re

from alembic import op

from twin.store.sqlfiles import sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

REPLACED = ("clock", "fields", "features_before", "reassign")


def upgrade() -> None:
    op.execute(sql("0003_history_fast"))


def downgrade() -> None:
    # The definitions of 0001, taken from its own file rather than copied here.
    for name in REPLACED:
        found = re.search(rf"^CREATE FUNCTION twin\.{name}\(.*?\$\$;$", sql("0001_history"),
                          re.DOTALL | re.MULTILINE)
        assert found is not None, f"0001_history.sql defines twin.{name}"
        op.execute(found.group().replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
