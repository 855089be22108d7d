# The live dashboard (examples/dashboard), the React example (examples/react)
# and their browser tests (tests/browser).
# Included by the top-level Makefile, after its PY, venv and NODE_STAMP
# (bridge_js npm ci) definitions:
#
#   include examples/dashboard/dashboard.mk
#
# Targets:
#   dashboard-build  bridge_js/dist, then npm ci + typecheck + esbuild -> examples/dashboard/dist/app.js
#   demo-page        what `make demo` needs: npm ci here and esbuild, bundling bridge_js from its
#                    sources (no bridge_js npm ci, no typecheck; dashboard-build and
#                    test-browser do those)
#   dashboard-demo   build, then serve.py: sidecar + page + workload, prints the URL (Ctrl-C stops)
#   react-build      bridge_js/dist, then npm ci + typecheck + esbuild -> examples/react/dist/app.js
#   dashboard-clean  removes what the targets above install and build
#   test-browser     both pages in headless Chromium (playwright-core), against real sidecars.
#                    Installs Debian's chromium with apt-get when missing; skips (exit 0, with a
#                    message) if that fails.

PY         ?= .venv/bin/python
NODE_STAMP ?= bridge_js/node_modules/.installed-stamp
CHROMIUM   ?= /usr/bin/chromium

DASHBOARD_DIR       := examples/dashboard
DASHBOARD_STAMP     := $(DASHBOARD_DIR)/node_modules/.installed-stamp
DASHBOARD_APP       := $(DASHBOARD_DIR)/dist/app.js
REACT_DIR           := examples/react
REACT_STAMP         := $(REACT_DIR)/node_modules/.installed-stamp
REACT_APP           := $(REACT_DIR)/dist/app.js
BROWSER_TEST_DIR    := tests/browser
BROWSER_TEST_STAMP  := $(BROWSER_TEST_DIR)/node_modules/.installed-stamp

.PHONY: dashboard-build demo-page dashboard-demo dashboard-clean react-build test-browser

dashboard-build: $(DASHBOARD_APP)

bridge_js/dist/index.js: $(NODE_STAMP) $(wildcard bridge_js/src/*.ts)
	cd bridge_js && npm run build

$(DASHBOARD_STAMP): $(DASHBOARD_DIR)/package.json $(DASHBOARD_DIR)/package-lock.json
	cd $(DASHBOARD_DIR) && npm ci --no-audit --no-fund
	touch $@

$(DASHBOARD_APP): $(DASHBOARD_STAMP) bridge_js/dist/index.js $(wildcard $(DASHBOARD_DIR)/src/*.ts)
	cd $(DASHBOARD_DIR) && npm run typecheck && npm run build

demo-page: $(DASHBOARD_STAMP)
	cd $(DASHBOARD_DIR) && npm run --silent build:demo

react-build: $(REACT_APP)

$(REACT_STAMP): $(REACT_DIR)/package.json $(REACT_DIR)/package-lock.json
	cd $(REACT_DIR) && npm ci --no-audit --no-fund
	touch $@

$(REACT_APP): $(REACT_STAMP) bridge_js/dist/index.js $(wildcard $(REACT_DIR)/src/*.tsx)
	cd $(REACT_DIR) && npm run typecheck && npm run build

dashboard-demo: venv dashboard-build
	$(PY) $(DASHBOARD_DIR)/serve.py --no-build --open auto

test-browser: venv dashboard-build react-build
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "test-browser: no Chromium at $(CHROMIUM): trying apt-get install chromium (log: test-artifacts/apt-chromium.log)"; \
	  mkdir -p test-artifacts; \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	  } > test-artifacts/apt-chromium.log 2>&1 || true; \
	fi; \
	if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "test-browser: SKIPPED: Chromium is not installed at $(CHROMIUM) and apt-get could not install it."; \
	  echo "test-browser: install it (apt-get install chromium) or set CHROMIUM=/path/to/chromium."; \
	  exit 0; \
	fi; \
	if [ ! $(BROWSER_TEST_STAMP) -nt $(BROWSER_TEST_DIR)/package-lock.json ] \
	  || [ ! $(BROWSER_TEST_STAMP) -nt $(BROWSER_TEST_DIR)/package.json ]; then \
	  (cd $(BROWSER_TEST_DIR) && npm ci --no-audit --no-fund) && touch $(BROWSER_TEST_STAMP) || exit 1; \
	fi; \
	cd $(BROWSER_TEST_DIR) && CHROMIUM_PATH="$(CHROMIUM)" TASKMILL_PYTHON="$(abspath $(PY))" npm test

dashboard-clean:
	rm -rf $(DASHBOARD_DIR)/node_modules $(DASHBOARD_DIR)/dist $(REACT_DIR)/node_modules $(REACT_DIR)/dist \
		$(BROWSER_TEST_DIR)/node_modules test-artifacts/dashboard.png test-artifacts/react.png
