"""The database's code as it is now: every function, trigger function and view of schema twin
in a file of its own under ``twin/store/sql/live/``, applied by ``twin db migrate`` after the
revisions. Read (and change) a definition there; a revision changes tables and data only,
and a function whose signature changes is dropped by the revision that changes it."""

from __future__ import annotations

from sqlalchemy import Connection

from twin.store.sqlfiles import sql

# The last revision whose SQL defined functions or views; later ones change tables and data.
LAST_REVISION_WITH_CODE = 12

# In the order they are applied: what a view or an SQL function calls comes before it.
LIVE = ("context", "clock", "set_context", "code_at", "fields", "feature_geojson",
        "subdistrict_of", "features_before", "working_day", "add_work", "work_seconds",
        "work_between", "fill_work_days", "work_days_stale", "case_route", "case_snapshot",
        "broken_rule", "checked_move", "row_changes", "cases_before", "cases_after",
        "orders_before", "orders_after", "caller", "set_caller", "erase_callers", "callers_masked",
        "log_rules", "reassign", "features_after", "notify_changes", "refuse",
        "versions_close_only", "register_layer", "put_layer_spec", "grant_app", "day_start",
        "change_day", "change_facts", "add_counts", "count_changes", "configure_change_counts",
        "edits_resolve_only", "notify_tokens", "guard_versions", "version_partitions",
        "unsorted_version_months", "sort_versions", "replica_lag")


def apply_live(conn: Connection) -> None:
    """Create or replace each definition, in ``conn``'s transaction."""
    cursor = conn.connection.cursor()  # the driver's own: no placeholders read in the text
    for name in LIVE:
        cursor.execute(sql(f"live/{name}"))
