# The two commands of the README. Both create (or reuse) .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench reference notebooks clean

# (Re)install when pyproject.toml changes; the stamp records a finished install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# the classroom comparison: fixed vs ATSS vs PAA vs LAD trained side by side (writes data/ and runs/compare/)
demo: $(STAMP)
	$(PY) -m lad_edu.cli compare

# the shipped reference the notebooks read at SCALE="tiny" (every strategy, seed 0; ~75 min on 2 cores)
reference: $(STAMP)
	$(PY) -m lad_edu.reference

# execute every notebook in place at SCALE="tiny" (same seed, same numbers), figures kept as PNG outputs, so
# the repository page shows them; the slider cells draw their static figure
notebooks: $(STAMP)
	$(PY) notebooks/execute.py

lint: $(STAMP)
	$(VENV)/bin/ruff check lad_edu tests benchmarks notebooks/execute.py
	$(VENV)/bin/ruff format --check lad_edu tests benchmarks notebooks/execute.py

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks.bench_assign
	$(PY) -m benchmarks.bench_paa
	$(PY) -m benchmarks.bench_train --threads 1

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
