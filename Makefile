# CurateCT. Quick start on a fresh Debian machine (Python 3.11, Node 20 + npm):
#     make run     # installs, migrates, seeds demo data, serves http://127.0.0.1:8000/
#     make test    # the whole test suite (installs Debian's chromium and DICOM peers if missing,
#                  # fetches the real chest CT of the tests from PyPI once)
# Every step is stamp-based, so the second run only does what changed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The suite's tests wait on subprocesses, browsers and workers much of the time: two pytest-xdist
# workers take its wall time from ~14 to ~10 minutes on 2 cores. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST = $(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal

VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps
DATA_DIR := $(or $(CURATECT_DATA_DIR),var)
# The CPU wheel of this release lies on the machines' disk for Python 3.11. It must be installed
# before requirements.txt: monai etc. would otherwise pull a multi-GB CUDA torch.
TORCH := torch==2.13.0
BOOT_PYTHON := $(shell command -v python3.11 || command -v python3)
# A new requirements file (or torch pin) gives a new stamp name, so the venv is brought up to date;
# the hash, not the mtime, decides: a fresh checkout does not reinstall. The venv is a developer's:
# requirements-dev.txt is requirements.txt (what the production image installs) plus test tools.
REQ_HASH := $(shell { echo '$(TORCH)'; cat requirements.txt requirements-dev.txt; } | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(REQ_HASH)

FRONTEND_SOURCES := $(shell [ -d frontend ] && find frontend \( -path frontend/node_modules -o -path frontend/dist \) -prune -o -type f -print)
TCMALLOC := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
# The real chest CT of tests and benches (pyradiomics 3.0.1's sdist); SHA256SUMS is written last.
LUNG1_STAMP := $(DATA_DIR)/testdata/pyradiomics-lung1/SHA256SUMS
# What the DICOM tests run: DCMTK's SCUs/SCPs, dicom3tools' validator, Orthanc as a DICOMweb PACS.
DICOM_BINARIES := storescu storescp echoscu dciodvfy Orthanc
ORTHANC_DICOMWEB := /usr/share/orthanc/plugins/libOrthancDicomWeb.so

.PHONY: help setup run test test-pg test-redis redis lint format typecheck bench clean distclean venv frontend browsers dicom-peers postgres router testdata api-types

help: ## list the targets
	@echo "CurateCT: make <target>   (quick start: make run, make test)"
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "Variables: HOST=$(HOST) PORT=$(PORT) DATABASE_URL (default SQLite in $(DATA_DIR)/) PYTEST_ARGS PYTEST_WORKERS=$(PYTEST_WORKERS)"

# ---------------------------------------------------------------- install

venv: $(VENV_STAMP)

$(VENV_STAMP):
	@if [ -z "$(BOOT_PYTHON)" ]; then echo "error: python3.11 (or python3) not found" >&2; exit 1; fi
	@if [ ! -x $(PY) ]; then \
	  ver=$$($(BOOT_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  if [ "$$ver" != 3.11 ]; then \
	    echo "error: CurateCT needs Python 3.11 ($(BOOT_PYTHON) is $$ver): Django 5.2 + the CPU torch wheel are pinned for it" >&2; \
	    exit 1; \
	  fi; \
	  echo ">> creating $(VENV) with $(BOOT_PYTHON)"; \
	  $(BOOT_PYTHON) -m venv $(VENV) || { echo "error: venv failed (Debian: apt-get install python3-venv)" >&2; rm -rf $(VENV); exit 1; }; \
	fi
	@echo ">> installing $(TORCH) (CPU) first, then requirements-dev.txt (requirements.txt + test tools)"
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

frontend: # build the TypeScript viewer (npm ci + vite build), if frontend/ has one
	@if [ ! -f frontend/package.json ]; then \
	  echo ">> frontend/package.json not found yet: skipping the frontend build"; \
	else \
	  [ -d frontend/node_modules ] || rm -f $(STAMPS)/frontend-deps; \
	  [ -d frontend/dist ] || [ -d platform_core/static/app ] || rm -f $(STAMPS)/frontend-build; \
	  $(MAKE) --no-print-directory $(STAMPS)/frontend-build; \
	fi

$(STAMPS)/frontend-deps: frontend/package.json $(wildcard frontend/package-lock.json)
	@command -v npm >/dev/null || { echo "error: npm not found (install Node.js 20 with npm)" >&2; exit 1; }
	@mkdir -p $(STAMPS)
	@echo ">> npm ci"
	cd frontend && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	@touch $@

$(STAMPS)/frontend-build: $(STAMPS)/frontend-deps $(FRONTEND_SOURCES)
	@echo ">> npm run build"
	cd frontend && npm run build
	@touch $@

# The frontend's API types from Django's OpenAPI schema (drf-spectacular, then openapi-typescript
# from node_modules: nothing is downloaded): $(call api_types,OUTPUT,WHERE SPECTACULAR'S WARNINGS GO)
define api_types
d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
$(PY) manage.py spectacular --file "$$d/schema.yaml" 2>$(2) && \
frontend/node_modules/.bin/openapi-typescript "$$d/schema.yaml" -o "$(1)" >/dev/null
endef

API_TYPES := frontend/src/api/schema.d.ts

api-types: venv ## regenerate frontend/src/api/schema.d.ts from the API's OpenAPI schema
	@[ -d frontend/node_modules ] || rm -f $(STAMPS)/frontend-deps
	@$(MAKE) --no-print-directory $(STAMPS)/frontend-deps
	@mkdir -p "$(DATA_DIR)"
	@( $(call api_types,$(API_TYPES),/dev/stderr) )
	@echo ">> $(API_TYPES) regenerated"

setup: venv frontend ## install everything and migrate the database
	@mkdir -p "$(DATA_DIR)"
	$(PY) manage.py migrate --noinput --skip-checks -v 0

# ---------------------------------------------------------------- run

run: setup ## start web server + Celery worker + DICOM listener (port 11112) with demo data
	$(PY) manage.py seed_demo | tee "$(DATA_DIR)/demo-logins.txt"
	# Scans received from a PACS land in the demo campaign, ready to batch.
	CURATECT_INTAKE_CAMPAIGN=$${CURATECT_INTAKE_CAMPAIGN-covid19} exec $(PY) -m platform_core.runner --host "$(HOST)" --port "$(PORT)" --notice "$(DATA_DIR)/demo-logins.txt"

# ---------------------------------------------------------------- checks

# Debian packages come through tools/apt-install.sh (as root or with sudo, services not started),
# the same script .ci/run uses; each target first looks for what the tests run, so a machine that
# has it from elsewhere installs nothing.
browsers: ## install Debian's chromium for the browser tests, if missing (never a downloaded build)
	@[ -x /usr/bin/chromium ] || tools/apt-install.sh chromium

dicom-peers: ## install Debian's dcmtk, dicom3tools, orthanc + orthanc-dicomweb for the DICOM tests, if missing
	@for b in $(DICOM_BINARIES); do command -v $$b >/dev/null || missing=1; done; \
	[ -z "$${missing-}" ] && [ -f $(ORTHANC_DICOMWEB) ] || tools/apt-install.sh dcmtk dicom3tools orthanc orthanc-dicomweb

postgres: ## install Debian's PostgreSQL server binaries for make test-pg, if missing (no cluster is started)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || tools/apt-install.sh postgresql

router: ## install Debian's nginx-light, the router of the production web tier (deploy/nginx), if missing
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || tools/apt-install.sh nginx-light

redis: ## install Debian's redis-server for make test-redis, if missing (no server is started)
	@command -v redis-server >/dev/null || tools/apt-install.sh redis-server

testdata: $(LUNG1_STAMP) ## fetch the real chest CT of tests and benches once (pyradiomics 3.0.1 sdist, sha256-pinned)

$(LUNG1_STAMP): tools/testdata.py | $(VENV_STAMP)
	$(PY) tools/testdata.py
	@touch $@

test: setup browsers dicom-peers router testdata ## run the whole test suite (DATABASE_URL=postgres://... for PostgreSQL)
	$(PYTEST) $(PYTEST_ARGS)

test-pg: setup browsers dicom-peers router testdata postgres ## the whole test suite on a throwaway PostgreSQL on loopback (the PostgreSQL-only tests too)
	tools/pg-throwaway.sh $(PYTEST) $(PYTEST_ARGS)

# Production's broker: the tests that start a real Celery worker (marker celery_worker), once more
# on a throwaway Redis on loopback (tools/redis-throwaway.sh); make test runs them on the embedded
# default's folder broker.
test-redis: setup redis ## the real-Celery-worker tests on a throwaway Redis on loopback, as production runs
	@$(PY) -c 'import redis' 2>/dev/null || { echo "error: the Python redis client (kombu's Redis transport) is not in $(VENV): pip install redis" >&2; exit 1; }
	tools/redis-throwaway.sh $(PYTEST) -m celery_worker $(PYTEST_ARGS)

# mypy's scope: the service layer of every app, where the invariants live (see [tool.mypy]).
MYPY_FILES = $$(ls -d */services.py */services */selectors.py */permissions.py 2>/dev/null | grep -v '^frontend/')

lint: venv ## ruff, import contracts, the OpenAPI schema, makemigrations --check, mypy (+ the frontend's lint and API types)
	@mkdir -p "$(DATA_DIR)"
	@# Every check runs, so one pass shows every problem; any failure fails the target.
	@status=0; \
	echo ">> ruff check"; $(VENV)/bin/ruff check . || status=1; \
	echo ">> ruff format --check"; $(VENV)/bin/ruff format --check . || status=1; \
	echo ">> lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	echo ">> spectacular --validate --fail-on-warn"; $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null || status=1; \
	echo ">> makemigrations --check"; $(PY) manage.py makemigrations --check --dry-run || status=1; \
	echo ">> mypy (service layer)"; $(PY) -m mypy $(MYPY_FILES) || status=1; \
	if [ -f frontend/package.json ]; then \
	  [ -d frontend/node_modules ] || rm -f $(STAMPS)/frontend-deps; \
	  $(MAKE) --no-print-directory $(STAMPS)/frontend-deps || status=1; \
	  echo ">> $(API_TYPES) against the OpenAPI schema"; tmp=$$(mktemp); \
	  if ( $(call api_types,$$tmp,"$$tmp.warnings") ); then \
	    cmp -s "$$tmp" $(API_TYPES) || { echo "$(API_TYPES) is stale: run make api-types" >&2; status=1; }; \
	  else cat "$$tmp.warnings" >&2; echo "could not generate the API types (see above)" >&2; status=1; fi; \
	  rm -f "$$tmp" "$$tmp.warnings"; \
	  echo ">> npm run lint"; (cd frontend && npm run --if-present lint) || status=1; \
	fi; \
	if [ $$status -ne 0 ]; then echo "lint: FAILED (see above)" >&2; fi; \
	exit $$status

format: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: venv ## mypy on the service layer (also part of make lint)
	$(PY) -m mypy $(MYPY_FILES)

bench: setup testdata ## run every bench/*.py and print their JSON
	@# bench/_*.py are helpers, not benchmarks. One failing bench does not hide the others' numbers.
	@# bench/train.py runs first: bench/preseg.py uses the model it leaves (else it trains a quick one).
	@shopt -s nullglob; status=0; files=(); \
	for f in bench/train.py bench/*.py; do \
	  case "$$(basename "$$f")" in _*) continue;; esac; \
	  if [ -f "$$f" ] && [[ " $${files[*]-} " != *" $$f "* ]]; then files+=("$$f"); fi; \
	done; \
	if [ $${#files[@]} -eq 0 ]; then echo ">> no bench/*.py yet"; fi; \
	for f in "$${files[@]}"; do \
	  echo ">> $$f" >&2; \
	  if [ -f $(TCMALLOC) ]; then LD_PRELOAD=$(TCMALLOC) $(PY) "$$f" || status=1; else $(PY) "$$f" || status=1; fi; \
	done; \
	exit $$status

# ---------------------------------------------------------------- cleaning

clean: ## remove build output and caches (keeps the venv, node_modules and data)
	rm -rf $(STAMPS)/frontend-build frontend/dist platform_core/static/app staticfiles test-artifacts .pytest_cache .ruff_cache .mypy_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./frontend/node_modules -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean ## also remove the venv, node_modules and the local data in var/
	rm -rf $(STAMPS) $(VENV) frontend/node_modules var
