"""The features' log written once per statement; each layer's feature count kept.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0019_statement_log"))


def downgrade() -> None:
    # the row trigger as 0001 made it; the older code's `twin db migrate` brings its body
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS features_after_{event} ON twin.features")
    op.execute("CREATE TRIGGER features_after AFTER INSERT OR UPDATE OR DELETE ON twin.features "
               "FOR EACH ROW EXECUTE FUNCTION twin.features_after()")
    op.execute("DROP TABLE twin.feature_counts")
