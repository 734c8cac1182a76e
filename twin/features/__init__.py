"""Features: reading them (SQL pieces, CQL2), the one write path for edits, photos as
evidence, exports and counts.

May import: the root modules and ``twin.store``.
"""
