"""Real data in: GIS files read, checked against a layer and written as one logged import.

May import: the root modules, ``store``, ``features`` (the layer's checks an edit runs)."""
