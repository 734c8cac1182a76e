"""The sample twin: its spec and generator, the generated history and cases, and the bulk
loader.

May import: the root modules, ``twin.store``, ``twin.cases`` (the rules cases follow) and
``twin.hotline`` (the hotline's rules, orders).
"""
