"""The sample twin: its spec and generator, the generated history, and the bulk loader.

May import: the root modules and ``twin.store``.
"""
