# Two entry points: `make run` (install, train if no model, serve with an example) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

PYTEST_WORKERS ?= 2
# the suites other than the default one run on one data set each: these leave out the real-data parameter
NOT_REAL := not realdata

.PHONY: install run train test test-realdata test-slow wrk test-postgres postgres-server test-browser browser java test-spark clean

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

# the fast tier: the synthetic retailer, on $(PYTEST_WORKERS) pytest workers (each trains its own model in seconds,
# idle workers take queued tests from busy ones); mypy runs beside the tests (its report printed after theirs) and
# either failing fails the target, with pytest's exit status first
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@log=$$(mktemp); $(BIN)/mypy > $$log 2>&1 & mypy=$$!; \
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS); tests=$$?; \
	wait $$mypy; typed=$$?; echo "mypy:"; cat $$log; rm -f $$log; \
	if [ $$tests -ne 0 ]; then exit $$tests; fi; exit $$typed

# the real-data tier: The Complete Journey slice (the same contract tests, and those that judge real data)
test-realdata: $(STAMP)
	$(BIN)/pytest -m 'realdata and not slow and not postgres and not browser and not spark' $(PYTEST_ARGS)

# the throughput benchmark (benchmarks/throughput.py) loads the server with wrk: Debian's, installed only when missing
wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq wrk; \
	fi

test-slow: $(STAMP) wrk
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# the replica tests start a private PostgreSQL cluster: Debian's server package, installed only when missing
postgres-server:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql; \
	fi

test-postgres: $(STAMP) postgres-server
	$(BIN)/pytest -m 'postgres and $(NOT_REAL)' $(PYTEST_ARGS)

# the review page's tests drive a headless browser: Debian's chromium and chromium-driver, installed only when missing
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; \
	fi

test-browser: $(STAMP) browser
	$(BIN)/pytest -m 'browser and $(NOT_REAL)' $(PYTEST_ARGS)

# the Spark engine's tests (local[2]): Java 17 (Debian's headless JRE, installed only when java is missing) and the
# spark extra (pyspark)
java:
	@if ! command -v java >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq openjdk-17-jre-headless; \
	fi

test-spark: $(STAMP) java
	$(BIN)/pip install --quiet -e '.[spark]'
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/pytest -m spark $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) models
