# Touchline: `make run` starts everything on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-embedded bench faults lint format migrate openapi clean help

help:
	@echo "make run    - install, migrate, and start web + worker/beat + provider simulator"
	@echo "make test   - run the test suite (PostgreSQL + Redis when they answer, else embedded)"
	@echo "make bench  - the benchmarks (bench/README.md), figures as ratios to baselines"
	@echo "make faults - the fault-injection tests at full size (N=2000 messages)"
	@echo "make lint   - ruff check and format check"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Worker processes for `make run`. One on the embedded default: without Redis the sender rate
# limit is kept per process. With Redis, run one per core (the production layout, Procfile:
# 2 x CELERY_WORKER_CONCURRENCY threads on 2 cores; bench/send_throughput.py measures that).
WORKERS ?= 1

run: $(BIN)/.installed
	@# A local .env with DEBUG=1 lets `.venv/bin/python manage.py …` work in this checkout too.
	@test -f .env || printf '# Local development settings (see .env.example)\nDEBUG=1\n' > .env
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py collectstatic --noinput --verbosity 0
	DEBUG=1 $(BIN)/python manage.py bootstrap_demo
	DEBUG=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile -c worker=$(WORKERS)

test: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/test $(ARGS)

test-embedded: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" TOUCHLINE_TEST_EMBEDDED=1 scripts/test $(ARGS)

bench: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" bench/run_all

N ?= 2000
faults: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/faults $(N)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

openapi: $(BIN)/.installed
	@# The committed schema; tests/test_openapi.py fails when the code and this file disagree.
	SECRET_KEY=openapi $(BIN)/python manage.py spectacular --file openapi.yaml --validate

migrate: $(BIN)/.installed
	DEBUG=1 $(BIN)/python manage.py migrate

clean:
	rm -rf $(VENV) .data .pytest_cache
