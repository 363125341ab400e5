# chaintrace: the two set-up commands are `make demo` (the main job) and `make test` (the tests).
# Both create the virtual environment and install the pinned set (constraints.txt) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: install test demo bench lint typecheck clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) /usr/bin/chromium

# Debian's Chromium for the browser tests and the UI benchmark (see deploy/install-chromium.sh).
/usr/bin/chromium:
	bash deploy/install-chromium.sh

test: install
	$(BIN)/python -m pytest $(ARGS)

demo: install
	$(BIN)/chaintrace demo $(ARGS)

bench: install
	$(BIN)/python -m bench $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
