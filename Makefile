# Twin: `make run` sets everything up and serves; `make test` sets up and runs the suite.
# On a fresh Debian/Ubuntu machine (as root, or with sudo) this installs what is missing:
# python3-venv, PostgreSQL 15 + PostGIS 3, pgBackRest, and (for tests) Chromium and GDAL.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
TWIN := $(VENV)/bin/twin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
PG := 15

.PHONY: run test lint install postgres test-tools bench bench-history bench-cases bench-hotline \
	bench-imports bench-map bench-restore bench-replica bench-writes soak fuzz chaos

run: install postgres
	$(TWIN) db start
	$(TWIN) db migrate
	$(TWIN) sample --if-empty
	$(TWIN) serve

# The suite makes its own databases (tests/conftest.py), so it does not wait for the sample's
# cases and orders to load into the twin `make run` serves.
test: install postgres test-tools
	$(TWIN) db start
	$(TWIN) db migrate
	$(MAKE) lint
	$(VENV)/bin/pytest -q -n auto --dist loadfile

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Benchmarks (never part of `make test`): Twin against tipg, pygeoapi and the PostgreSQL floor
# on the scale-20 sample in database twin_bench; ~10 min. See bench/README.md for the knobs
# (TARGETS=twin,tipg QUERIES=Q1,Q2 DURATION=10 WARMUP=3 ...).
bench: install postgres
	$(VENV)/bin/python -m bench

bench-history: install postgres
	$(VENV)/bin/python -m bench.history

# Cases (issue 19) on the scale-10 sample with 81,460 filed cases in database twin_bench_cases
# (made once, ~30 min on 2 busy CPUs; reused after): the board's figures, transitions at 8 clients,
# the overdue list and the half-year report against the issue's goals. See bench/README.md.
bench-cases: install postgres
	$(VENV)/bin/python -m bench.cases

# Hotline orders (issue 20): importing ten half years (27,730 orders) of the city system's export,
# the rates by grid, placing one address, the share of callers' addresses on the right building;
# on a copy of twin_bench_hotline (the sample with its cases and orders, made once). bench/README.md.
bench-hotline: install postgres
	$(VENV)/bin/python -m bench.hotline

# Importing a 100,000-building GeoPackage against ogr2ogr (IMPORT_BIG=1 adds a million).
bench-imports: install postgres
	$(VENV)/bin/python -m bench.imports

# Backing up and restoring a twin with a history (scale 20, 2,000,000 changes, made once in
# .twin/bench/restore, ~15 min), over the running cluster and into a lost data folder.
bench-restore: install postgres
	$(VENV)/bin/python -m bench.restore

# One edit's database cost now and at the revision before the stored text (WRITES_BASE).
bench-writes: install postgres
	$(VENV)/bin/python -m bench.writes

# A read replica of bench-restore's twin: a read's cost there against the primary, and its lag
# while the primary is written (a replica is added, then removed).
bench-replica: install postgres
	$(VENV)/bin/python -m bench.replica

# The live map in headless Chromium on the scale-20 history twin (make bench-history first).
bench-map: install postgres test-tools
	$(VENV)/bin/python -m bench.map

# Offline-sync soak test (never part of `make test`): every worker's tablet and a few
# supervisors' over a link that drops, then an audit of the log; ~3 min. Knobs: SOAK_TABLETS,
# SOAK_EDITS, SOAK_DROP, SOAK_KEEP_DB=1 ... (bench/README.md).
soak: install postgres
	$(VENV)/bin/python -m bench.soak

# Faults under load (never part of `make test`, which runs a short pass): the soak's tablets
# against `twin serve --workers 2` on a scratch cluster of its own while PostgreSQL restarts
# (fast, then a crash), the server is killed twice and the photo store's disk fills up; then
# the audit. ~6 min; the disk fault mounts a tmpfs (root). Knobs: CHAOS_FAULTS, CHAOS_GAP,
# SOAK_TABLETS ... (bench/README.md).
chaos: install postgres
	$(VENV)/bin/python -m bench.chaos

# The API fuzzed, the long pass (never part of `make test`, which runs the short one): every
# operation of the OpenAPI document, valid and invalid requests, as every role and none, on a
# copy of twin_fuzz (the sample with its cases and orders, made once); no 5xx, nothing the
# document does not declare, nothing changed by a refused request. FUZZ_EXAMPLES=25 per
# operation and mode; bench/fuzz.py.
fuzz: install postgres
	$(VENV)/bin/python -m bench.fuzz

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "installing python3-venv"; $(APT) update -qq && $(APT) install -y -qq python3-venv \
		&& rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

# PostgreSQL + PostGIS from apt, and pgBackRest for `twin db backup`, unless they are there or
# TWIN_DATABASE_URL points elsewhere.
postgres:
	@if [ -n "$$TWIN_DATABASE_URL" ]; then echo "TWIN_DATABASE_URL is set: using that database"; \
	elif [ -x /usr/lib/postgresql/$(PG)/bin/initdb ] \
		&& [ -f /usr/share/postgresql/$(PG)/extension/postgis.control ] \
		&& command -v pgbackrest >/dev/null; then :; \
	else echo "installing PostgreSQL $(PG) + PostGIS 3 + pgBackRest with apt-get"; \
		$(APT) update -qq && $(APT) install -y -qq postgresql-$(PG) postgresql-$(PG)-postgis-3 \
		pgbackrest; fi

# What the tests drive: Debian's Chromium for pages (Playwright talks to it; no browser
# download), a Chinese font for readable screenshots, GDAL's ogrinfo as a real OGC API client.
test-tools:
	@[ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/truetype/wqy ] && command -v ogrinfo >/dev/null \
		|| { echo "installing chromium, a Chinese font and gdal-bin with apt-get"; \
		$(APT) update -qq && $(APT) install -y -qq chromium fonts-wqy-microhei gdal-bin; }
