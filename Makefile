# Quarry: two commands on a fresh machine.
#   make run   create .venv, install, start the service (embedded Redis, a worker, the API on
#              127.0.0.1:8000) and ingest the demo collection (docs/)
#   make demo  the same work from the CLI alone: ingest docs/ and answer a question
#   make test  create .venv, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

CHROMIUM ?= /usr/bin/chromium

.PHONY: install lock browser run demo test test-fast lint lint-imports bench clean

install: $(STAMP)

# Installs come from requirements.lock (every package pinned with its hashes; `make lock`
# refreshes it). torch is installed first from constraints.txt, so a CPU machine never pulls
# CUDA wheels, and is left out of the lock for that reason.
$(STAMP): requirements.lock constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve every dependency from pyproject.toml (newest releases within its ranges).
lock:
	test -x $(BIN)/pip-compile || $(MAKE) install
	$(BIN)/pip-compile --quiet --upgrade --no-emit-index-url --no-emit-find-links \
	  --constraint=constraints.txt --extra=dev --extra=postgres --generate-hashes \
	  --strip-extras --unsafe-package=torch --output-file=requirements.lock pyproject.toml

run: install
	$(BIN)/quarry serve --ingest docs --collection quarry-docs

demo: install
	$(BIN)/quarry ingest docs -c quarry-docs
	$(BIN)/quarry ask "How does Quarry keep an interrupted ingest from leaving half-written data?" -c quarry-docs --show-plan

# The UI's browser tests drive Debian's chromium (never a browser download); installed when missing.
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the web UI's browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; } || \
	  echo "could not install chromium: the browser tests will skip (and fail under CI=true)"; }

test: install browser
	$(BIN)/python -m pytest

# Unit tier: no servers, no child processes, nothing marked slow (under two minutes).
test-fast: install
	$(BIN)/python -m pytest -m "not e2e and not slow" -q

# The package folders import as quarry.<folder> through setuptools' package-dir, which mypy
# cannot follow: it reads them through a tree of links, build/typecheck/quarry/<folder>
# (mypy_path and packages in pyproject.toml).
PACKAGES := core retrieval memory agents workers evals api ui cli

lint: install lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p build/typecheck/quarry
	for p in $(PACKAGES); do ln -sfn ../../../$$p build/typecheck/quarry/$$p; done
	$(BIN)/mypy

# The layer contracts ([tool.importlinter] in pyproject.toml).
lint-imports: install
	$(BIN)/lint-imports --no-cache

bench: install
	$(BIN)/python benchmarks/retrieval_quality.py
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/search_latency.py

clean:
	rm -rf $(VENV) .quarry .pytest_cache
