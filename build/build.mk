# build/build.mk: the frozen sidecar (PyInstaller), included by the top-level Makefile.
#
#   make build          onedir binary, printed path (skipped when nothing relevant changed)
#   make build-onefile  onefile binary (cached the same way)
#   make build APP=thumbs.tasks:domain APP_PATH=src NAME=thumbs-sidecar
#                       your own task modules frozen in (APP and APP_PATH may list
#                       several, space-separated; HIDDEN_IMPORT likewise): their
#                       third-party packages must be installed in .venv first
#   make build-tools    just .venv with taskmill and PyInstaller, no dev tools (then
#                       .venv/bin/pip install your app's dependencies)
#   make test-frozen    both builds, the conformance smoke on the onedir binary
#                       (when ../shared is here), the examples against it, then
#                       tests/frozen on both
#   make test-frozen-apps  your own tasks frozen in: examples/python_app's binary
#                       run without --app, and tests/packaging/test_frozen_app.py
#                       (a missing third-party package fails the build, naming it;
#                       installed, the task runs in the binary)
#   make measure        sizes and launch-to-ready times, as JSON
#
# Outputs: build/out/onedir/taskmill-sidecar-<triple>/ and
# build/out/onefile/taskmill-sidecar-<triple>; stamps and PyInstaller's work
# folders live in build/cache/. Uses VENV, PY and STAMP from the Makefile
# (include this after they are defined); the defaults match it.

VENV  ?= .venv
PY    ?= $(VENV)/bin/python
STAMP ?= $(VENV)/.installed-stamp
RUNTIME_STAMP ?= $(VENV)/.runtime-stamp
BUILD_TOOLS_STAMP := $(VENV)/.build-tools-stamp

SMOKE ?= ../shared/conformance/smoke.py

.PHONY: build build-onefile build-tools test-frozen test-frozen-apps measure

# PyInstaller comes from pyproject's [build] extra; building needs nothing
# else (not the dev tools), so a newcomer's `make build-tools` is quick.
$(BUILD_TOOLS_STAMP): $(RUNTIME_STAMP) pyproject.toml
	$(PY) -m pip install -q -e ".[build]"
	touch $@

build-tools: $(BUILD_TOOLS_STAMP)

APP ?=
APP_PATH ?=
HIDDEN_IMPORT ?=
NAME ?=
BUILD_ARGS = $(foreach a,$(APP),--app $(a)) $(foreach d,$(APP_PATH),--app-path $(d)) \
	$(foreach m,$(HIDDEN_IMPORT),--hidden-import $(m)) $(if $(NAME),--name $(NAME))

build: $(BUILD_TOOLS_STAMP)
	@$(PY) build/build.py $(BUILD_ARGS)

build-onefile: $(BUILD_TOOLS_STAMP)
	@$(PY) build/build.py --onefile $(BUILD_ARGS)

# FROZEN_ONEFILE=0 skips the onefile build (its tests then skip): it adds
# about 10-20 s to a cold build, nothing once cached.
FROZEN_ONEFILE ?= 1

test-frozen: $(STAMP) $(BUILD_TOOLS_STAMP)
	@set -e; \
	onedir=$$($(PY) build/build.py); \
	onefile=; if [ "$(FROZEN_ONEFILE)" != 0 ]; then onefile=$$($(PY) build/build.py --onefile); fi; \
	if [ -f "$(SMOKE)" ]; then \
		echo "conformance smoke on $$onedir"; TASKMILL_SIDECAR="$$onedir" $(PY) "$(SMOKE)"; \
	else echo "test-frozen: conformance smoke skipped: $(SMOKE) is not here"; fi; \
	TASKMILL_SIDECAR="$$onedir" $(PY) examples/headless/client.py >/dev/null; \
	TASKMILL_SIDECAR="$$onedir" bash examples/headless/run.sh >/dev/null; \
	TASKMILL_FROZEN_ONEDIR="$$onedir" TASKMILL_FROZEN_ONEFILE="$$onefile" \
		$(PY) -m pytest -q tests/frozen

test-frozen-apps: $(STAMP) $(BUILD_TOOLS_STAMP) test-frozen-app
	TASKMILL_TEST_FROZEN_APPS=1 $(PY) -m pytest -q tests/packaging/test_frozen_app.py

measure: $(BUILD_TOOLS_STAMP)
	$(PY) build/measure.py
