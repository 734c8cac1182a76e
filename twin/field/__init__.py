"""The field: what a tablet carries (its micro-grids' features) and what tablets report
still waiting in their outboxes.

May import: the root modules, ``twin.store``, ``twin.features`` and ``twin.history``.
"""
