# DeskPulse everyday commands. `make help` lists them.
# Each target installs what it needs on a fresh Debian / Raspberry Pi OS machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# apt is used only when a tool is missing; sudo only when we are not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# pytest-xdist workers: most tests wait on brokers, processes and browsers, so two share 2 cores well.
PYTEST_WORKERS ?= 2

.PHONY: help venv deps demo test test-fast lint clean screenshots bundle pi-vm-test bench

help: ## List the everyday commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "DeskPulse needs Python 3.11 or newer ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  { echo "Installing python3-venv through apt"; $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install DeskPulse with its test extras

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	@touch $(BENCH_STAMP)

deps: ## Install system packages that are missing (Mosquitto, Chromium)
	@missing=""; \
	  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	  command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "Installing through apt:$$missing"; \
	    $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	  fi

demo: venv deps ## Run the demo: private Mosquitto, central and a kiosk window (DEMO_ARGS=--headless for no window)
	$(PY) -m dev.demo $(DEMO_ARGS)

test: venv deps ## Run ruff, strict mypy and the whole test suite
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: venv deps $(BENCH_STAMP) ## Every benchmark, one table and plots in build/bench/ (BENCH_ARGS='--only ingest', see bench/README.md)
	$(PY) -m bench $(BENCH_ARGS)

screenshots: venv deps ## Save PNGs of the kiosk screens and the dashboard to docs/img/
	$(PY) -m device.cli screenshot --all --out docs/img
	$(PY) -m dev.dashboard_screenshots --out docs/img
	$(PY) -m dev.admin_screenshots --out docs/img

bundle: venv ## Release archives in dist/, one per target, with every wheel (needs PyPI; BUNDLE_ARGS=--target NAME)
	$(PY) -m dev.bundle $(BUNDLE_ARGS)

pi-vm-test: venv ## Boot an emulated 64-bit Pi (QEMU), install the bundle, tap, sync (not in make test; first run builds a cached image, ~25 min)
	$(SUDO) $(PY) -m dev.pivm $(PIVM_ARGS)

lint: venv ## ruff and strict mypy (make test runs them first)
	$(PY) -m ruff check .
	$(PY) -m mypy

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
