# The README's commands. Each target sets up what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint format soak bench clean browser

run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensure_admin
	$(PY) manage.py studio --port $(PORT)

test: $(VENV)/.dev browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	Q_CLUSTER_NAME=lumaweb-test CACHE_PREFIX=lumaweb-test $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(VENV)/.dev
	@command -v chromium >/dev/null 2>&1 || bin/install-chromium
	$(PY) bench/run.py

# SOAK_N generations (default 200) through a faulty emulator, the worker killed along the way.
soak: $(VENV)/.runtime
	$(PY) bench/soak.py

$(VENV)/bin/python:
	@interpreter=$$(bin/find-python) || exit 1; \
	echo "Creating $(VENV) with $$interpreter"; \
	"$$interpreter" -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(VENV)/.runtime $@

# Browser tests drive Debian's chromium (Playwright's own browser download does not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || bin/install-chromium

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
