# The README's commands. Each target does all of its own set-up (virtualenv + install).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The PostgreSQL the test suite uses for real (both backends are tested; this one must be up).
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install demo test test-later ui bench lint clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# The main job: simulator + unattended connect + 90-day backfill through Dagster on SQLite.
demo: install
	$(BIN)/bank-pipeline demo

# The test suite, on SQLite and on PostgreSQL (fails if PostgreSQL is unreachable).
test: install
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) $(BIN)/python -m pytest -q

# The Dagster UI on the demo's data (run the simulator too, for new imports).
# The date-sensitive tests again with the machine's clock far ahead (Debian's faketime): proves
# they read the one pinned clock, not today's date. The webserver + daemon tests are left out:
# Dagster's daemon ticks schedules on the machine's clock, which is what faketime moves.
FAKETIME_OFFSET ?= +75d
test-later: install
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) faketime -f '$(FAKETIME_OFFSET)' $(BIN)/python -m pytest -q -p no:cacheprovider -m "date_sensitive and not daemon"

ui: install
	$(BIN)/bank-pipeline db upgrade
	env $$($(BIN)/python -m bank_pipeline.orchestration.instance) $(BIN)/dg dev -w workspace.yaml

bench: install
	BANK_PIPELINE_TEST_POSTGRES_URL=$(TEST_POSTGRES_URL) $(BIN)/python -m bank_pipeline_tests.bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .bank_pipeline
