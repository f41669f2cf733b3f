# bcsync: `make run` serves the app on the embedded defaults, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: venv run test test-fast lint bench clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

## Migrate, create the local admin (password printed once), load demo data, then serve the admin,
## a django-q2 worker and the Microsoft 365 emulator until Ctrl-C.
run: venv
	bin/run-local

## The whole suite (browser tests included; they need /usr/bin/chromium: apt-get install chromium).
test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Everything but the browser tests.
test-fast: venv
	$(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) manage.py bench_sync $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
