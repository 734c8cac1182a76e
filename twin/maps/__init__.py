"""Maps and key figures: the Folium page, the data behind the live map, per-grid KPIs.

May import: the root modules, ``twin.store``, ``twin.features`` and ``twin.field``.
"""
