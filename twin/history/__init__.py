"""History: the change feed, a feature's versions and diffs, reverts, period reports, and
backups that restore the twin as it was at any moment (pgBackRest, backup).

May import: the root modules, ``twin.store`` and ``twin.features``.
"""
