# bcsync: `make run` serves the app on the embedded defaults, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium

.PHONY: venv run test test-fast lint bench bench-live clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# Installed here when it is missing and we are root with apt-get (as in CI); otherwise stop at once
# and say the one command to run.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium for the browser tests (apt-get install chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Chromium. Run:  sudo apt-get install -y chromium"; \
		echo "(or make test-fast, which leaves them out)"; \
		exit 1; \
	fi

## Migrate, create the local admin (password printed once), load demo data, then serve the admin,
## a django-q2 worker and the Microsoft 365 emulator until Ctrl-C.
run: venv
	bin/run-local

## The whole suite, browser tests included (Chromium is installed first when it is missing).
test: $(CHROMIUM) venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Everything but the browser tests.
test-fast: venv
	$(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) manage.py bench_sync $(BENCH_ARGS)

bench-live: venv
	$(PY) manage.py bench_live $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
