"""The store: the local PostgreSQL cluster, connections and edit context, the migrations with
their SQL, and the history's storage upkeep.

May import: the root modules of ``twin`` (settings, errors, times, crs, layer, registry,
users). Every other room sits above it.
"""
