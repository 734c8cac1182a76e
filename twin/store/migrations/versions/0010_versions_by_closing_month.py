"""Versions partitioned by the month they closed, so a month can be sorted by place once.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0010_versions_by_closing_month"))


def downgrade() -> None:
    op.execute("DROP VIEW twin.unsorted_version_months")
    op.execute("DROP FUNCTION twin.version_partitions, twin.sort_versions, twin.guard_versions")
    op.execute("ALTER TABLE twin.feature_versions RENAME TO feature_versions_0010")
    op.execute("CREATE TABLE twin.feature_versions (LIKE twin.feature_versions_0010 "
               "INCLUDING DEFAULTS)")
    op.execute("INSERT INTO twin.feature_versions SELECT * FROM twin.feature_versions_0010")
    op.execute("DROP TABLE twin.feature_versions_0010")
    op.execute("""
        ALTER TABLE twin.feature_versions ADD PRIMARY KEY (feature_id, version);
        CREATE INDEX feature_versions_valid_idx ON twin.feature_versions USING gist (layer, valid);
        CREATE INDEX feature_versions_geom_idx ON twin.feature_versions USING gist (geom, valid);
        REVOKE ALL ON twin.feature_versions FROM PUBLIC;
        CREATE TRIGGER versions_no_delete BEFORE DELETE ON twin.feature_versions
            FOR EACH ROW EXECUTE FUNCTION twin.refuse('versions are kept forever');
        CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON twin.feature_versions
            FOR EACH STATEMENT EXECUTE FUNCTION twin.refuse('versions are kept forever');
        CREATE TRIGGER versions_close_only BEFORE UPDATE ON twin.feature_versions
            FOR EACH ROW EXECUTE FUNCTION twin.versions_close_only();""")
