# Two commands: `make run` (the whole system on embedded defaults) and `make test`.
# Both install the `vision` extra: the heavy worker of `make run` runs the CLIP job with it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint install bench chaos clean browser postgres faketime promtool

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,vision]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m app.devrun

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Best effort: Debian's chromium + chromedriver for tests/browser. Never fails the build; without
# them the browser tests skip with a message saying so.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing chromium and chromium-driver with apt-get"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
			|| echo "browser: could not install chromium; BROWSER TESTS WILL BE SKIPPED" >&2; \
	else \
		echo "browser: chromium/chromedriver missing and not root with apt-get; BROWSER TESTS WILL BE SKIPPED" >&2; \
	fi

# Debian's PostgreSQL server binaries for the tests marked both_databases (the suite starts
# its own throwaway server). Under CI a missing server fails the suite instead of skipping.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "postgres: installing the postgresql server with apt-get"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
			|| echo "postgres: could not install postgresql; POSTGRESQL TESTS WILL NOT RUN" >&2; \
	else \
		echo "postgres: no PostgreSQL server binaries and not root with apt-get; POSTGRESQL TESTS WILL NOT RUN" >&2; \
	fi

# Debian's libfaketime for the clock-skew tests (a scheduler replica with its host clock off).
faketime:
	@if [ -n "$$(ls /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 2>/dev/null)" ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "faketime: installing libfaketime with apt-get"; \
		(apt-get install -y -qq faketime >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null)) \
			|| echo "faketime: could not install it; CLOCK SKEW TESTS WILL BE SKIPPED" >&2; \
	else \
		echo "faketime: libfaketime missing and not root with apt-get; CLOCK SKEW TESTS WILL BE SKIPPED" >&2; \
	fi

# Debian's prometheus package for its promtool: tests/test_monitoring.py checks and unit-tests the
# alert rules in monitoring/ with it. Under CI a missing promtool fails the suite instead of skipping.
promtool:
	@if command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "promtool: installing prometheus (for promtool) with apt-get"; \
		(apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)) \
			|| echo "promtool: could not install prometheus; ALERT RULE TESTS WILL BE SKIPPED" >&2; \
	else \
		echo "promtool: promtool missing and not root with apt-get; ALERT RULE TESTS WILL BE SKIPPED" >&2; \
	fi

# Two pytest-xdist workers (each with its own Redis and PostgreSQL): the suite's time is mostly
# real processes waiting (timeouts, kills, outages), so two run side by side on two cores.
test: install lint browser postgres faketime promtool
	$(VENV)/bin/pytest -n 2

bench: install
	$(PY) -m bench

# The long chaos run: 5 minutes of kills, a Redis restart and hostile entries (the suite runs 30 s).
chaos: install faketime
	$(PY) -m bench chaos

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .mypy_cache
