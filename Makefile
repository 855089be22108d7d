# taskmill: make demo | make test | make bench | make build
#
# Everything a fresh clone needs is here: the targets create .venv, install the
# package with its dev tools, and run npm ci where JavaScript is involved.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := bridge_js/node_modules/.installed-stamp

.PHONY: venv demo demo-python test test-python test-bridge conformance lint bench bench-full clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

$(NODE_STAMP): bridge_js/package.json bridge_js/package-lock.json
	cd bridge_js && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The sidecar with the demo and fs executors, the live dashboard page and a
# real workload; prints the URL (with its token) to open. Ctrl-C stops it.
demo: venv dashboard-build
	$(PY) examples/dashboard/serve.py --no-build

# The same kind of workload through the Python API, in-process; exits when done.
demo-python: venv
	$(PY) examples/quickstart.py

lint: venv
	$(PY) -m ruff check sidecar tests bench examples build
	$(PY) -m mypy

test-python: venv
	$(PY) -m pytest -q

test-bridge: venv $(NODE_STAMP)
	cd bridge_js && npm run build && npm run typecheck && npm test
	cd bridge_js && TASKMILL_PYTHON=$(abspath $(PY)) npm run test:integration
	cd bridge_js && npm run test:pack

conformance: venv
	$(PY) ../shared/conformance/smoke.py

test: lint test-python test-bridge conformance test-examples test-frozen test-browser

bench: venv
	$(PY) -m bench --quick

bench-full: venv
	$(PY) -m bench --full

clean: dashboard-clean
	rm -rf $(VENV) bridge_js/node_modules bridge_js/dist build/out build/cache \
		examples/electron/node_modules

include build/build.mk examples/examples.mk examples/dashboard/dashboard.mk
