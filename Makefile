# The project's commands: `make serve` runs the demo server, `make test` the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NODE_PEER := tests/interop/node

.PHONY: install serve test lint typecheck bench bench-quick bench-hub fuzz soak clean docs

$(VENV)/.installed: pyproject.toml setup.py $(wildcard src/wskit/*.c)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test,bench,docs]'
	touch $@

install: $(VENV)/.installed

$(NODE_PEER)/node_modules/.installed: $(NODE_PEER)/package.json
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix $(NODE_PEER) && touch $@; \
	else echo "npm not found: the Node.js interop tests will skip"; fi

HOST ?= 127.0.0.1
PORT ?= 8080

serve: install
	$(PY) -m wskit serve --host $(HOST) --port $(PORT)

lint: install
	$(VENV)/bin/ruff check src tests bench

typecheck: install
	$(VENV)/bin/mypy

test: install $(NODE_PEER)/node_modules/.installed lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider --cov=wskit --cov-branch --cov-report=term
	$(VENV)/bin/coverage report --include='src/wskit/core/*' --fail-under=95

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: install
	$(PY) -m bench.run

bench-quick: install
	$(PY) -m bench.run --quick

bench-hub: install
	$(PY) -m bench.hub

# 10,000 idle connections, then 1,000 doing echo for SOAK_SECONDS (tests/soak/soak.py).
SOAK_SECONDS ?= 60
soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) tests/soak/soak.py

# FUZZ_SECONDS per target (six targets); inputs with new outcomes are kept in tests/fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz: install
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -p no:cacheprovider -o timeout=0 tests/fuzz --hypothesis-profile=long

clean:
	rm -rf $(VENV) build site src/*.egg-info src/wskit/*.so .coverage
