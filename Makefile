# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/enrichment
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
# The broker tests (markers `broker` and `faults`) run a second time against RabbitMQ.
TEST_AMQP_BROKER_URL ?= amqp://guest:guest@127.0.0.1:5672//
# With RabbitMQ as the broker, Redis still shares the rate limits and provider circuits between
# processes (CACHE_URL), as in a RabbitMQ deployment.
TEST_AMQP_CACHE_URL ?= redis://127.0.0.1:6379/14
TEST_AMQP_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/enrichment_rabbitmq
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format bench bench-adapter-cost clean

# The development environment: runtime and dev dependencies (pytest, ruff, Playwright...).
install: $(VENV)/.installed

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

# What running needs, without the dev group; --inexact keeps a dev environment already there.
$(VENV)/.installed-runtime: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --no-dev --inexact
	touch $@

# Serves the API with a worker and beat; SQLite and a file-system broker unless configured.
run: $(VENV)/.installed-runtime
	HOST=$(HOST) PORT=$(PORT) bin/run

# The whole suite on Redis and, at the same time, the broker tests on RabbitMQ (own database;
# both passes mostly wait on workers and timers, so together they take little more than the
# longer one); its output follows the Redis pass's, and either failing fails.
test: install lint
	bin/test-prepare
	@DATABASE_URL=$(TEST_AMQP_DATABASE_URL) CELERY_BROKER_URL=$(TEST_AMQP_BROKER_URL) \
		CACHE_URL=$(TEST_AMQP_CACHE_URL) $(VENV)/bin/pytest -m "broker or faults" \
		> .pytest-rabbitmq.log 2>&1 & rabbitmq=$$!; \
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(VENV)/bin/pytest; redis_status=$$?; \
	wait $$rabbitmq; rabbitmq_status=$$?; \
	echo "--- the broker tests on RabbitMQ ---"; cat .pytest-rabbitmq.log; \
	test $$redis_status -eq 0 -a $$rabbitmq_status -eq 0

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

bench-adapter-cost: install
	$(VENV)/bin/python -m bench.adapter_cost

clean:
	rm -rf $(VENV) .tools .broker db.sqlite3 .pytest_cache .pytest-rabbitmq.log
