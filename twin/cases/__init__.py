"""Cases (一网统管): what is found wrong in the street and the work done on it, from report to
closure, against working-time deadlines. The database keeps the loop (twin.cases_before);
this room says who may ask for what, reads cases and counts them honestly.

May import: the root modules, ``twin.store`` and ``twin.features``.
"""
