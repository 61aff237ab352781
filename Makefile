# Two commands do all of the set-up: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install lint

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[datasets,benchmarks,tables,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxnas search

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Test files run in parallel (pytest-xdist), each file in one worker so that its
# module-level setups are made once: 9.5 min on 2 cores instead of 15.6 one after another.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile
