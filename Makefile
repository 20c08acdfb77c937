# deskbridge developer entry points. Works on a fresh Debian/Ubuntu machine:
# system packages come from apt (as root, or via sudo), Python ones into .venv.
#
#   make run [ARGS="--port 9000"]   install, then run deskbridge (own private redis-server)
#   make test                       install, ensure Redis on 127.0.0.1:6379, lint, pytest
#   make lint                       ruff check, ruff format --check, mypy, hadolint
#   make bench [ARGS=...] [PEERS=...]  install (+ wrk, the bench group), then bench/run.py
#                                   and bench/compare.py (deskbridge against its peers)
#   make bench ARGS="--scale ..."   1 vs 2 gateway processes and workers (bench/scale.py)
#   make bench-instructions [ARGS=...]  instructions per ack under callgrind: the peers
#                                   compared in a way other load cannot disturb
#   make faults [ARGS=...]          install, then the long fault runs (bench/faults.py)
#   make security [ARGS=...]        install, then the security probes (bench/security.py)
#   make fuzz [EXAMPLES=20000]      install, then the long parser fuzzing campaign
#   make install (= venv)           create .venv, install project + dev group (when pyproject changes)
#   make clean / distclean          remove caches and build output / also .venv

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.deskbridge-installed
ARGS   ?=
PIP_SPEC ?= pip>=25.1

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

# Paths that exist right now (bench/ may not yet).
LINT_PATHS := $(wildcard src tests bench)

.PHONY: help venv install sysdeps run test lint bench bench-instructions faults security fuzz clean distclean FORCE

help:
	@sed -n '1,16s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

venv install: $(STAMP)
	@:

# The venv's python must run; if it does not (missing, or its base interpreter is gone),
# force a rebuild of the stamp, whose recipe then recreates the venv.
ifneq ($(shell $(PY) -c 'print(1)' 2>/dev/null),1)
$(STAMP): FORCE
endif
FORCE:

# Create the venv (installing python3 / python3-venv via apt when needed), then install
# the project (editable) + the PEP 735 dev group. Redone only when pyproject.toml changes.
# `pip install --group` needs pip >= 25.1: pip is upgraded first; if that is impossible,
# the dev group is read from pyproject.toml and installed as a plain list.
$(STAMP): pyproject.toml
	@if ! $(PY) -c '' >/dev/null 2>&1; then \
	    rm -rf $(VENV); \
	    command -v $(PYTHON) >/dev/null 2>&1 || scripts/ensure-apt.sh --always python3 python3-venv; \
	    $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	        echo "make: deskbridge needs Python >= 3.11, $(PYTHON) is $$($(PYTHON) -V 2>&1); try make PYTHON=python3.11" >&2; \
	        exit 1; }; \
	    echo "make: creating $(VENV)"; \
	    if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
	        rm -rf $(VENV); \
	        scripts/ensure-apt.sh --always python3-venv; \
	        $(PYTHON) -m venv $(VENV); \
	    fi; \
	fi
	@echo "make: installing deskbridge + dev group into $(VENV)"
	@$(PIP) install -q --upgrade '$(PIP_SPEC)' \
	    || echo "make: could not upgrade pip; falling back to an explicit dev list" >&2
	@if $(PY) -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (25, 1))'; then \
	    $(PIP) install -q -e . --group dev; \
	else \
	    $(PY) -c 'import tomllib; g = tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]; print("\n".join(r for r in g["dev"] if isinstance(r, str)))' \
	        > $(VENV)/dev-requirements.txt; \
	    $(PIP) install -q -e . -r $(VENV)/dev-requirements.txt; \
	fi
	@touch $@

# System packages: redis-server/redis-cli (tests; `run` spawns its own redis-server),
# redis-sentinel (the failover tests start three Sentinels), sipp (sip-tester), the real
# SIP peer the SIP tests talk to, and chromium, the browser the console tests drive.
sysdeps:
	@scripts/ensure-apt.sh redis-server=redis-server redis-cli=redis-tools \
	    redis-sentinel=redis-sentinel sipp=sip-tester chromium=chromium

run: $(STAMP) sysdeps
	exec $(VENV)/bin/deskbridge run $(ARGS)

# pytest takes -x -q from pyproject addopts. Do not add another -q here: at -qq pytest drops
# its closing 'N passed' line, which CI reads. pytest's exit code (5 = no tests) propagates.
# The suite runs on PYTEST_WORKERS pytest-xdist workers (0 = in this process), a test
# file per worker at a time (module fixtures such as the fault harness stay whole); each
# worker gets its own Redis database (tests/conftest.py).
PYTEST_WORKERS ?= 2
test: $(STAMP) sysdeps
	@scripts/ensure-redis.sh
	@$(MAKE) lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Runs every checker, then fails if any failed.
lint: $(STAMP)
	@rc=0; \
	echo "+ ruff check $(LINT_PATHS)"; $(VENV)/bin/ruff check -q $(LINT_PATHS) || rc=1; \
	echo "+ ruff format --check $(LINT_PATHS)"; $(VENV)/bin/ruff format -q --check $(LINT_PATHS) || rc=1; \
	echo "+ mypy src"; $(VENV)/bin/mypy src || rc=1; \
	echo "+ mypy tests"; $(VENV)/bin/mypy tests || rc=1; \
	echo "+ hadolint Dockerfile"; $(VENV)/bin/hadolint Dockerfile || rc=1; \
	if [ $$rc -ne 0 ]; then echo "make: lint failed" >&2; fi; \
	exit $$rc

bench: $(STAMP)
	@scripts/ensure-apt.sh redis-server=redis-server redis-cli=redis-tools wrk
	@test -f bench/run.py || { echo "make: bench/run.py does not exist yet" >&2; exit 1; }
	@$(PY) -c 'import fastapi, uvicorn, httpx' 2>/dev/null || { \
	    $(PY) -c 'import tomllib; g = tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]; print("\n".join(g["bench"]))' \
	        > $(VENV)/bench-requirements.txt && $(PIP) install -q -r $(VENV)/bench-requirements.txt; }
	$(PY) bench/$(if $(filter --scale,$(ARGS)),scale.py,run.py) $(filter-out --scale,$(ARGS))
	$(if $(filter --scale,$(ARGS)),,$(PY) bench/compare.py $(PEERS))

bench-instructions: $(STAMP)
	@scripts/ensure-apt.sh redis-server=redis-server redis-cli=redis-tools callgrind_control=valgrind
	@$(PY) -c 'import fastapi, uvicorn, httpx' 2>/dev/null || { \
	    $(PY) -c 'import tomllib; g = tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]; print("\n".join(g["bench"]))' \
	        > $(VENV)/bench-requirements.txt && $(PIP) install -q -r $(VENV)/bench-requirements.txt; }
	$(PY) bench/instructions.py $(ARGS)

# kill -9, Redis restarts, desk outages, 429s, a backlog; writes docs/reliability.md.
faults: $(STAMP)
	@scripts/ensure-apt.sh redis-server=redis-server redis-cli=redis-tools redis-sentinel=redis-sentinel
	$(PY) bench/faults.py $(ARGS)

# health/metrics exposure, slow clients, token claims, erasure leftovers against running
# serve + worker processes (bench/security.py); `make test` runs the short form.
security: $(STAMP)
	@scripts/ensure-apt.sh redis-server=redis-server redis-cli=redis-tools
	$(PY) bench/security.py $(ARGS)

# hypothesis over every parser of untrusted input; `make test` runs 25 examples a property.
EXAMPLES ?= 20000
fuzz: $(STAMP)
	DESKBRIDGE_FUZZ_EXAMPLES=$(EXAMPLES) $(VENV)/bin/pytest tests/test_fuzz.py $(PYTEST_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .bench build dist
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
