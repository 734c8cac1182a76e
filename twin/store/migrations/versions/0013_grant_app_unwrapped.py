"""grant_app is one function (twin/store/sql/live/grant_app.sql): the four versions revisions
0002-0011 renamed and wrapped it into are dropped.

Revision ID: 0013
Revises: 0012
"""

import re

from alembic import op

from twin.store.sqlfiles import sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# each wrapped version: the revision file that defined it, and the name a later one gave it
WRAPPED = (("0001_history", "grant_app_0001"), ("0002_change_counts", "grant_app_0002"),
           ("0005_edits", "grant_app_0005"), ("0006_photos", "grant_app_0010"))


def upgrade() -> None:
    op.execute("DROP FUNCTION " + ", ".join(f"twin.{name}(text)" for _, name in WRAPPED))


def downgrade() -> None:
    # back as they were, from their revisions' own files (the downgrades of 0011 and before
    # rename them to grant_app again)
    for source, name in WRAPPED:
        found = re.search(r"^CREATE FUNCTION twin\.grant_app\(.*?\$\$;$", sql(source),
                          re.DOTALL | re.MULTILINE)
        assert found is not None, f"{source}.sql defines twin.grant_app"
        op.execute(found.group().replace("twin.grant_app(", f"twin.{name}(", 1))
