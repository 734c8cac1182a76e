"""Maps and key figures: the Folium page, the data behind the live map, per-grid KPIs and
the cases and hotline orders the command centre watches.

May import: the root modules, ``twin.store``, ``twin.features``, ``twin.field``,
``twin.cases`` and ``twin.hotline``.
"""
