"""Twin's benchmark: the same requests against Twin, tipg, pygeoapi and the PostgreSQL floor.

Run it with ``make bench`` (or ``.venv/bin/python -m bench``); see ``bench/README.md``.
Nothing here is imported by Twin itself or collected by ``make test``.
"""
