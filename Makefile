# Two commands do all set-up: `make run` (the app) and `make test` (all tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.app-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: run serve test bench clean

# Only this machine can reach it; `make run ADDRESS=0.0.0.0` only behind a proxy (README, Security).
ADDRESS ?= 127.0.0.1

run: $(APP_STAMP)
	$(VENV)/bin/streamlit run app.py --server.address $(ADDRESS)

# fastapi-vss's REST API from the same engine (see README "REST API")
serve: $(APP_STAMP)
	$(VENV)/bin/uvicorn api:app --host 127.0.0.1 --port 8000

test: $(TEST_STAMP)
	$(PY) -m pytest

bench: $(TEST_STAMP)
	$(PY) bench/run_all.py

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(APP_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(TEST_STAMP): requirements-test.txt $(APP_STAMP)
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
