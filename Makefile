# taskmill: make demo | make test | make bench | make build
#
# Everything a fresh clone needs is here: the targets create .venv, install the
# package with its dev tools, and run npm ci where JavaScript is involved. The
# clone alone is enough: the external contract check (SHARED, ../shared by
# default) runs when that folder is present and is skipped, saying so, when not.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
NODE_STAMP := bridge_js/node_modules/.installed-stamp
SHARED ?= ../shared
SMOKE  := $(SHARED)/conformance/smoke.py

.PHONY: venv demo demo-python test test-python test-bridge test-package conformance lint api-docs bench bench-full clean

venv: $(STAMP)

# The package and its runtime dependencies only: what `make demo` needs.
$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# Plus the dev tools (pytest, ruff, mypy, hypothesis, build) and the benchmark peer.
$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $(STAMP)

$(NODE_STAMP): bridge_js/package.json bridge_js/package-lock.json
	cd bridge_js && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The sidecar with the demo and fs executors, the live dashboard page and a
# steady, varied workload for as long as it runs; prints the URL (with its
# token) and opens it when a display is present. Ctrl-C stops it. Installs
# only what it needs: the package with its runtime dependencies, and the
# dashboard's esbuild (the page bundles bridge_js from its sources).
demo: $(RUNTIME_STAMP) demo-page
	$(PY) examples/dashboard/serve.py --no-build --open auto

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

# The external contract's smoke check, when $(SHARED) is beside this clone.
conformance: venv
	@if [ -f "$(SMOKE)" ]; then $(PY) "$(SMOKE)"; \
	else echo "conformance: skipped: $(SMOKE) is not here (the external contract check; the project's own tests cover the protocol)"; fi

# The wheel and the sdist (python -m build), each installed into a clean venv
# outside the repository: --version and a stdio exchange (tests/packaging/test_dist.py).
# The npm tarball's equivalent is bridge_js/test/pack, run by test-bridge.
test-package: venv
	TASKMILL_TEST_PACKAGING=1 $(PY) -m pytest -q tests/packaging/test_dist.py

# docs/python-api.md from the docstrings (tests/packaging/test_python_api_doc.py
# fails when a public name or method is missing from it).
api-docs: venv
	$(PY) build/python_api.py

test: lint test-python test-bridge conformance test-examples test-package test-frozen test-frozen-apps test-browser

bench: venv
	$(PY) -m bench --quick

bench-full: venv
	$(PY) -m bench --full

clean: dashboard-clean
	rm -rf $(VENV) bridge_js/node_modules bridge_js/dist build/out build/cache \
		examples/electron/node_modules

include build/build.mk examples/examples.mk examples/dashboard/dashboard.mk
