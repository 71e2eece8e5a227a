# `make run`: set up everything on a fresh machine, then run the embedded default cell.
# `make test`: the same set-up, then the test suite (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1

.PHONY: install run test test-fast browser postgres clean

install: $(STAMP)

# torch first, pinned: an unpinned torch (pulled in by a dependency) is a multi-GB CUDA build on a
# CPU machine; on a GPU host the same pin takes the CUDA wheel from PyPI.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# CodeBLEU's official grammars (npm tarballs, checksummed, compiled with cc): see metrics/legacy_grammars.py
	$(PY) -m metrics.legacy_grammars build
	touch $(STAMP)

run: $(STAMP)
	$(OFFLINE) $(PY) -m harness

# Debian's chromium for the browser test of the MLflow UI (skipped, not failed, where it cannot be had).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the e2e test will be skipped"

# Debian's PostgreSQL for the tracking-server test (tests/cluster/test_tracking_server.py starts its own
# throwaway server; skipped, not failed, where it cannot be had). Debian keeps initdb and pg_ctl in
# /usr/lib/postgresql/<version>/bin, off PATH.
postgres:
	@{ command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 ; } || \
	  ls /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) ; } || \
	  echo "PostgreSQL not installed: the tracking server test will be skipped"

test: $(STAMP) browser postgres
	$(OFFLINE) $(PY) -m pytest -q

test-fast: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs/outputs runs/multirun runs/cache
