# One command per habit. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit installed docs dist demo bench format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The whole check: lint, types, then the suite against the built wheel as installed (the
# suite builds the site strictly too, in tests/test_docs_site.py).
test: lint typecheck installed

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks tools
	$(BIN)/ruff format --check src tests examples benchmarks tools

# pyright: strict over tests/typing and examples. (pyright --verifytypes, complete types for
# every public symbol, is a test: tests/test_exports.py.)
typecheck: $(STAMP)
	$(BIN)/mypy --strict src tests/typing examples tools
	$(BIN)/pyright -p pyproject.toml

# The suite against the checkout (an editable install): the quick loop while working.
unit: $(STAMP)
	$(BIN)/python -m pytest

# The suite against the wheel `make dist` built, installed with its dev extras into an
# environment of its own, with src/ nowhere on the path: a module, a data file or
# py.typed that the wheel lacks fails here (tests/conftest.py checks what was imported).
INSTALLED := build/installed
installed: dist
	rm -rf $(INSTALLED)
	$(PYTHON) -m venv $(INSTALLED)
	$(INSTALLED)/bin/python -m pip install --quiet --upgrade pip
	$(INSTALLED)/bin/python -m pip install --quiet "$$(ls dist/*.whl)[dev]"
	RESILIENT_TEST_INSTALLED=1 $(INSTALLED)/bin/python -m pytest -p no:cacheprovider

# The sdist and the wheel, into dist/ (the wheel is built from the sdist), checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# The documentation site, into site/; strict, so a broken link, a missing page or a
# docstring that disagrees with its signature fails. (NO_MKDOCS_2_WARNING: Material's
# notice about its own end of life, printed on every build.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# A match day against three flaky feeds, then the same match unprotected; prints where
# the HTML report is. The other examples: python -m examples.kickoff_spike, http_gateway.
demo: $(STAMP)
	$(BIN)/python -m examples.odds_aggregator --compare

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/bench_breaker.py
	$(BIN)/python benchmarks/bench_retry.py
	$(BIN)/python benchmarks/bench_bulkhead.py
	$(BIN)/python benchmarks/bench_budget.py
	$(BIN)/python benchmarks/bench_stack.py
	$(BIN)/python benchmarks/bench_otel.py
	$(BIN)/python benchmarks/bench_overload.py
	$(BIN)/python benchmarks/bench_virtual_time.py
	$(BIN)/python benchmarks/bench_chaos.py
	$(BIN)/python benchmarks/bench_failover.py
	$(BIN)/python benchmarks/bench_cache.py
	$(BIN)/python benchmarks/bench_httpx.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_paths.py
	$(BIN)/python benchmarks/bench_simulate.py

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks tools
	$(BIN)/ruff check --fix src tests examples benchmarks tools

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache .hypothesis build dist
