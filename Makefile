# millrace — every target sets itself up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8080
DATA    ?= ./data
ARGS    ?=
# Python caches compiled modules (__pycache__, ignored by git) even where the environment
# says not to: without the cache every `millrace` process the tests start compiles our
# modules again (~0.3-0.5 s of CPU each), and pytest rewrites the asserts of every test
# module in each of its processes (collection 9.2 s -> 3.5 s)
unexport PYTHONDONTWRITEBYTECODE

# pytest-xdist workers for `make test` (0: one process); each has its own chDB directory.
# Three on two cores: the tests wait on the processes they start about a third of the time
WORKERS ?= 3

.PHONY: run test lint typecheck bench clean install peers

# Test peers from Debian: the Mosquitto MQTT broker (the tests start and stop their own
# broker on a free port; the package's system service is not used), and Chromium with its
# WebDriver for the console's browser tests (tests/console, bench/console.py).
peers:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  echo "installing mosquitto (Debian package) for the MQTT tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null; }
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  echo "installing chromium and chromium-driver (Debian packages) for the console's browser tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/millrace run --data-dir $(DATA) --host $(HOST) --port $(PORT) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline connectors projections api tests bench setup.py
	$(BIN)/ruff format --check pipeline connectors projections api tests bench setup.py

# mypy cannot follow setuptools' editable finder: it checks the millrace package
# through build/typecheck/millrace/<folder> -> <folder> (mypy_path in pyproject)
typecheck: $(STAMP)
	@mkdir -p build/typecheck/millrace
	@for d in pipeline connectors projections api schemas; do \
	  ln -sfn ../../../$$d build/typecheck/millrace/$$d; done
	$(BIN)/mypy

test: $(STAMP) peers lint typecheck
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider --durations=25 -n $(WORKERS) --dist loadfile --no-loadscope-reorder -m 'not solo' $(ARGS)
	@# the tests that compare rates measured in the run itself, with the machine to themselves
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider -m solo $(ARGS) || test $$? -eq 5

bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .bench-data
