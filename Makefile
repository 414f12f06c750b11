# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned dependency set (requirements.lock) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench-quick clean

$(STAMP): setup.cfg requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgevlm demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench-quick: $(STAMP)
	$(VENV)/bin/edgevlm bench --quick

clean:
	rm -rf $(VENV) .pytest_cache
