# Every target bootstraps .venv on first use, so a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help demo demo-spool test soak bench bench-fleet lint types pytest docs matrix clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev,demo]'
	@# Byte-compiled here, once, on every core (pip compiles one file at a time): left to the
	@# suite, each of its processes compiled what it imported at the same time as the others
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $(STAMP)

# The demos need only the package and moto: a first `make demo` skips the test toolchain.
# Its own stamp, so that `make test` afterwards still installs everything; a .venv that
# already has everything serves the demos as it is.
DEMO_STAMP := $(VENV)/.demo-stamp

$(DEMO_STAMP): pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then touch $@; else \
		set -e; \
		[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet --upgrade pip; \
		echo "installing the package and the demo extra (moto)"; \
		$(BIN)/python -m pip install --quiet --no-compile -e '.[demo]'; \
		touch $@; \
	fi

demo: $(DEMO_STAMP) ## log through expiring tokens against a local fake AWS
	$(BIN)/watchtower-refresh demo

demo-spool: $(DEMO_STAMP) ## kill -9 a process that logs with a disk spool, then replay what it left
	$(BIN)/watchtower-refresh demo --spool

test: $(STAMP) ## ruff, mypy --strict, pytest with branch coverage, the docs site
	@$(MAKE) --no-print-directory lint
	@# mypy and the docs build each take one core for half a minute while the suite runs:
	@# side by side, each printing its output whole when it is done
	@$(MAKE) --no-print-directory -j3 --output-sync=target types docs pytest

bench: $(STAMP) ## the benchmarks of docs/performance.md
	$(BIN)/python -m benchmarks.run

# Not in `make bench`: a minute or two of a fleet against one quota. BEFORE=<git revision>
# measures that revision first, for a before and after. Results: benchmarks/results-fleet.json.
BEFORE ?=
bench-fleet: $(STAMP) ## processes sharing one PutLogEvents quota: throttled share, drain, loss
	$(BIN)/python -m benchmarks.fleet $(if $(BEFORE),--before $(BEFORE))

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP) ## mypy --strict
	$(BIN)/mypy

pytest: $(STAMP) ## the test suite with branch coverage, in 5 processes, longest tests first
	@# Compiled first, once: the package, which hundreds of the suite's Python processes
	@# import, and the test modules as pytest rewrites their asserts, which each of the 5
	@# processes otherwise did for itself (6 s of CPU each). PYTHONDONTWRITEBYTECODE would
	@# keep pytest from writing what it rewrote: unset for that one collection.
	$(BIN)/python -m compileall -q watchtower_refresh > /dev/null
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q --no-cov -p no:cacheprovider > /dev/null
	$(BIN)/pytest -n 5 --dist load --maxschedchunk 1

# Not in `make test`, which runs the same tests smaller: .ci/run runs both.
soak: $(STAMP) ## the soak-marked tests at full size: more records, kills and examples
	WATCHTOWER_REFRESH_SOAK=1 $(BIN)/pytest -m soak -n 2 --no-cov

# Not --quiet: it hides the warnings that --strict turns into errors.
docs: $(STAMP) ## build the documentation site into site/, warnings as errors
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

matrix: ## the suite on each CPython 3.10-3.14 found, and on the lowest dependencies
	$(PYTHON) ci/matrix.py

clean: ## remove the virtualenvs and caches
	rm -rf $(VENV) .venv-matrix site .coverage .coverage.* .mypy_cache .pytest_cache .ruff_cache .hypothesis
