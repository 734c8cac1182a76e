"""12345 hotline work orders: their rules as data, the orders and their events, callers apart.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

from twin.store.sqlfiles import sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# the live definitions (twin/store/sql/live/) that need this revision's tables
LIVE_FUNCTIONS = ("twin.orders_before()", "twin.orders_after()", "twin.caller(bigint)",
                  "twin.set_caller(bigint, text, text)", "twin.erase_callers(timestamptz)")


def upgrade() -> None:
    op.execute(sql("0016_hotline"))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS twin.callers_masked")
    op.execute("DROP FUNCTION IF EXISTS " + ", ".join(LIVE_FUNCTIONS) + " CASCADE")
    op.execute("DROP INDEX twin.features_address_idx")
    op.execute("DROP TABLE twin.open311_clients, twin.contact_log, twin.order_callers, "
               "twin.order_events, twin.orders, twin.order_transitions, twin.hotline_rules, "
               "twin.order_duties, twin.order_kinds")
