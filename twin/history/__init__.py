"""History: the change feed, a feature's versions and diffs, reverts, period reports.

May import: the root modules, ``twin.store`` and ``twin.features``.
"""
