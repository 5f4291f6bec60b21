# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/enrichment
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format bench clean

install: $(VENV)/.installed

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

# Serves the API with a worker and beat; SQLite and a file-system broker unless configured.
run: install
	HOST=$(HOST) PORT=$(PORT) bin/run

test: install lint
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Throughput against same-run baselines on a fresh `enrichment_bench` database and Redis db 9;
# prints the table and writes bench/results/latest.json.
bench: install
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) .tools .broker db.sqlite3 .pytest_cache
