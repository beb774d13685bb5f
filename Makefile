# Two commands do all set-up: `make run` (the app) and `make test` (all tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.app-installed
TEST_STAMP := $(VENV)/.test-installed
# Debian's Chromium, for the browser tests (tests/test_browser.py); never a downloaded browser.
CHROMIUM ?= /usr/bin/chromium

.PHONY: run serve test bench clean

# Only this machine can reach it; `make run ADDRESS=0.0.0.0` only behind a proxy (README, Security).
ADDRESS ?= 127.0.0.1

run: $(APP_STAMP)
	$(VENV)/bin/streamlit run app.py --server.address $(ADDRESS)

# fastapi-vss's REST API from the same engine (see README "REST API")
serve: $(APP_STAMP)
	$(VENV)/bin/uvicorn api:app --host 127.0.0.1 --port 8000

test: $(TEST_STAMP) $(CHROMIUM)
	$(PY) -m pytest

bench: $(TEST_STAMP)
	$(PY) bench/run_all.py

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The requirements, then VSS itself (editable: the `vss` command in $(VENV)/bin runs this checkout).
$(APP_STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt "setuptools>=70.1"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The peers the compatibility tests run for real (MBARI's mbari-aidata): without their dependencies,
# which pull in tools the tests never use; what they import is in requirements.txt.
$(TEST_STAMP): requirements-test.txt requirements-peers.txt $(APP_STAMP)
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-peers.txt
	touch $@

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@test -x $@ || { echo "make test: the browser tests need Chromium at $@, which is missing." \
		"Install it once as root: 'sudo apt-get install chromium' (Debian), then run make test again." \
		"(The other tests alone: $(PY) -m pytest -m 'not browser'.)" >&2; exit 1; }

clean:
	rm -rf $(VENV) .pytest_cache
