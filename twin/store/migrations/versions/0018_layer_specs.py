"""Layers as data in a running twin: each layer's spec, version by version.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql("0018_layer_specs"))


def downgrade() -> None:
    op.execute("DROP TABLE twin.layer_specs")
