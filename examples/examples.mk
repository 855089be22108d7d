# examples/examples.mk: the examples' checks, included by the top-level Makefile.
#
#   make test-examples      run every example that runs without Electron/Tauri/Rust,
#                           against `.venv/bin/python -m taskmill` (about 30 s):
#                           headless/run.sh, headless/client.py, python_app/run.py,
#                           the Electron main-process code under Node, a
#                           type-check of the Tauri and Electron code against bridge_js,
#                           copy_sidecar.py --help, and the demo's live workload
#                           (dashboard/check_live.py: 20 s of serve.py --no-page)
#   make build-python-app   freeze python_app into its own binary (photos-sidecar-<triple>)
#   make test-frozen-app    build it, then run python_app/run.py --bundled against it
#                           (no --app: the module is frozen in as the default app)
#   make tauri-sidecar      build the sidecar and copy it into examples/tauri/src-tauri/binaries/
#
# Uses VENV, PY, STAMP and NODE_STAMP from the Makefile (include this after
# they are defined); the defaults match it.

VENV       ?= .venv
PY         ?= $(VENV)/bin/python
STAMP      ?= $(VENV)/.installed-stamp
NODE_STAMP ?= bridge_js/node_modules/.installed-stamp
BUILD_TOOLS_STAMP ?= $(VENV)/.build-tools-stamp
TSC        := bridge_js/node_modules/.bin/tsc
PHOTOS_APP := --app myapp.tasks:domain --app-path examples/python_app --name photos-sidecar

.PHONY: test-examples build-python-app test-frozen-app tauri-sidecar

# The Electron example imports taskmill-bridge/node: built JS, linked the way
# `npm install` links a file: dependency.
bridge_js/dist/node.js: $(NODE_STAMP) $(wildcard bridge_js/src/*.ts)
	cd bridge_js && npm run build

examples/electron/node_modules/taskmill-bridge:
	mkdir -p $(@D)
	ln -sfn ../../../bridge_js $@

test-examples: $(STAMP) $(NODE_STAMP) bridge_js/dist/node.js examples/electron/node_modules/taskmill-bridge
	@set -e; \
	echo "== examples/headless/run.sh"; \
	TASKMILL_SIDECAR="$(PY) -m taskmill" bash examples/headless/run.sh; \
	echo "== examples/headless/client.py"; \
	$(PY) examples/headless/client.py; \
	echo "== examples/python_app/run.py"; \
	$(PY) examples/python_app/run.py; \
	echo "== examples/electron: node --check, type-check, sidecar.mjs under Node"; \
	for f in examples/electron/*.mjs examples/electron/*.cjs examples/electron/renderer.js; do \
		node --check "$$f"; done; \
	$(TSC) -p examples/electron/tsconfig.check.json; \
	TASKMILL_PYTHON="$(abspath $(PY))" node examples/electron/sidecar.mjs; \
	echo "== examples/tauri: type-check src/main.ts, parse the JSON configs"; \
	$(TSC) -p examples/tauri/tsconfig.check.json; \
	$(PY) -c 'import json, sys; [json.load(open(f)) for f in sys.argv[1:]]' \
		examples/tauri/src-tauri/*.json examples/tauri/src-tauri/capabilities/*.json \
		examples/tauri/package.json examples/electron/package.json; \
	$(PY) examples/tauri/copy_sidecar.py --help | grep -q "build.py options" ; \
	echo "== examples/dashboard: the demo's workload stays alive (20 s)"; \
	$(PY) examples/dashboard/check_live.py 20; \
	echo "test-examples: all passed"

build-python-app: $(BUILD_TOOLS_STAMP)
	@$(PY) build/build.py $(PHOTOS_APP)

test-frozen-app: $(BUILD_TOOLS_STAMP)
	@set -e; exe=$$($(PY) build/build.py $(PHOTOS_APP)); \
	cd "$${TMPDIR:-/tmp}" && TASKMILL_SIDECAR="$$exe" $(abspath $(PY)) $(CURDIR)/examples/python_app/run.py --bundled

tauri-sidecar: $(BUILD_TOOLS_STAMP)
	$(PY) examples/tauri/copy_sidecar.py
