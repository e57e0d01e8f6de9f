# ale: `make run` serves the dashboard with everything it needs; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: run test test-fast lint-imports e2e bench check clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(PY) -m ale_site.devserver

# The whole suite, browser journeys included. Redis: REDIS_URL, else 127.0.0.1:6379, else an
# embedded one; the database: DATABASE_URL, else SQLite.
# `lint-imports` first: a new import cycle or a layer crossed (.importlinter) fails the build.
# The tests without a browser mostly wait (on the devcluster, Celery, sockets), so they run in
# three xdist workers, a file to a worker; then the browser journeys, one at a time. Both halves
# always run and either failing fails the target; a half left with nothing to run by
# PYTEST_ARGS (pytest's exit status 5) is not a failure.
test: $(STAMP) lint-imports
	$(PY) -m ale_site.localstack with-redis $(PY) -m pytest -m "not e2e" -n 3 --dist loadfile $(PYTEST_ARGS); \
	parallel=$$?; \
	$(PY) -m ale_site.localstack with-redis $(PY) -m pytest -m e2e $(PYTEST_ARGS); \
	journeys=$$?; \
	for status in $$parallel $$journeys; do [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status; done

test-fast: $(STAMP) lint-imports
	$(PY) -m ale_site.localstack with-redis $(PY) -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

e2e: $(STAMP)
	$(PY) -m ale_site.localstack with-redis $(PY) -m pytest -m e2e $(PYTEST_ARGS)

check: $(STAMP)
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf var staticfiles .pytest_cache
