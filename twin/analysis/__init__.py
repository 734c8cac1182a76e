"""Planners' analyses over the street network: distances, coverage, siting, fire access.

May import: the root modules, ``twin.store`` and ``twin.features``.
"""
