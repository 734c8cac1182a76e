"""Each present feature's GeoJSON text, kept by the triggers.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0020_stored_geojson"))


def downgrade() -> None:
    # the older code's `twin db migrate` brings back features_before without the text
    op.execute("ALTER TABLE twin.features DROP COLUMN geojson")
    op.execute("DROP FUNCTION IF EXISTS twin.feature_geojson")
