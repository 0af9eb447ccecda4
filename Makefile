# Two entry points: `make run` (install, train if no model, serve with an example) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

.PHONY: install run train test test-slow test-postgres postgres-server test-browser browser java test-spark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

models/current: | $(STAMP)
	$(BIN)/recsys train --out models

train: $(STAMP)
	$(BIN)/recsys train --out models

run: $(STAMP) models/current
	$(BIN)/recsys serve --model models/current --host 127.0.0.1 --port 8000 --example

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# the replica tests start a private PostgreSQL cluster: Debian's server package, installed only when missing
postgres-server:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql; \
	fi

test-postgres: $(STAMP) postgres-server
	$(BIN)/pytest -m postgres $(PYTEST_ARGS)

# the review page's tests drive a headless browser: Debian's chromium and chromium-driver, installed only when missing
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; \
	fi

test-browser: $(STAMP) browser
	$(BIN)/pytest -m browser $(PYTEST_ARGS)

# the Spark engine's tests (local[2]): Java 17 (Debian's headless JRE, installed only when java is missing) and the
# spark extra (pyspark)
java:
	@if ! command -v java >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq openjdk-17-jre-headless; \
	fi

test-spark: $(STAMP) java
	$(BIN)/pip install --quiet -e '.[spark]'
	$(BIN)/pytest -m spark $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) models
