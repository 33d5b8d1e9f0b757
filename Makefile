# The README's commands. Each target does all of its own set-up (virtualenv + install).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The PostgreSQL the test suite uses for real (both backends are tested; this one must be up).
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install demo test test-later ui bench lint clean lock test-dagster-latest

# Exact versions from requirements.lock (what CI tests), then the project itself without
# resolving again; setup.py keeps the ranges for whoever installs bank_pipeline as a library.
$(BIN)/.installed: setup.py requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(BIN)/.installed

# The main job: simulator + unattended connect + 90-day backfill through Dagster on SQLite.
demo: install
	$(BIN)/bank-pipeline demo

# The test suite, on SQLite and on PostgreSQL. .ci/test_prerequisites first installs Debian's
# chromium when root, or stops at once naming what is missing (PostgreSQL, RabbitMQ, chromium).
test: install
	bash .ci/test_prerequisites '$(TEST_POSTGRES_URL)'
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) $(BIN)/python -m pytest -q

# The date-sensitive tests again with the machine's clock far ahead (Debian's faketime): proves
# they read the one pinned clock, not today's date. The webserver + daemon tests are left out:
# Dagster's daemon ticks schedules on the machine's clock, which is what faketime moves.
FAKETIME_OFFSET ?= +75d
test-later: install
	bash .ci/test_prerequisites '$(TEST_POSTGRES_URL)' faketime
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) faketime -f '$(FAKETIME_OFFSET)' $(BIN)/python -m pytest -q -p no:cacheprovider -m "date_sensitive and not daemon"

# The Dagster UI on the demo's data (run the simulator too, for new imports).
ui: install
	$(BIN)/bank-pipeline db upgrade
	env $$($(BIN)/python -m bank_pipeline.orchestration.instance) $(BIN)/dg dev -w workspace.yaml

bench: install
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) $(BIN)/python -m bank_pipeline_tests.bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Refresh requirements.lock to the newest versions setup.py's ranges allow (needs `uv`:
# `pip install uv`), then run `make test` and commit the lock with the code that needs it.
lock:
	uv pip compile setup.py --extra test --universal --python-version 3.11 --upgrade -o requirements.lock

# The tests that compare our Dagster storages with Dagster's stock ones, against the newest
# Dagster 1.x on the package index, in a throwaway virtualenv (docs/dagster-internals.md).
DAGSTER_LATEST_VENV ?= $(or $(TMPDIR),/tmp)/bank_pipeline-dagster-latest
test-dagster-latest:
	rm -rf $(DAGSTER_LATEST_VENV)
	$(PYTHON) -m venv $(DAGSTER_LATEST_VENV)
	$(DAGSTER_LATEST_VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(DAGSTER_LATEST_VENV)/bin/python -m pip install --quiet --upgrade \
		"dagster>=1,<2" "dagster-webserver>=1,<2" "dagster-dg-cli>=1,<2" \
		"dagster-postgres<1" "dagster-celery[redis]<1"
	$(DAGSTER_LATEST_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(DAGSTER_LATEST_VENV)/bin/python -c "import dagster; print('Dagster', dagster.__version__)"
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) $(DAGSTER_LATEST_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		bank_pipeline_tests/test_dagster_sqlite_storage.py bank_pipeline_tests/test_dagster_postgres_storage.py \
		bank_pipeline_tests/test_event_batching.py
	rm -rf $(DAGSTER_LATEST_VENV)

clean:
	rm -rf $(VENV) .bank_pipeline
