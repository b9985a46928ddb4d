# Two commands set everything up on a fresh machine with Python 3.11:
#   make run   - creates .venv, installs, starts the app with the demo data loaded
#   make test  - creates .venv, installs dev tools, runs the whole test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint bench demo reference clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev-installed
	.ci/system-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not browser"
	$(BIN)/python -m pytest -m browser -s

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	for f in benchmarks/bench_*.py; do echo "== $$f"; PYTHONPATH=. $(BIN)/python $$f; done

# Rerun every R script in tests/reference (needs R with lme4, metafor, clubSandwich, lavaan, jsonlite)
# and fail on any numerical difference from the committed values (relative 1e-9).
reference: $(VENV)/.dev-installed
	$(BIN)/python tests/reference/check_reference.py

demo: $(VENV)/.installed
	$(BIN)/python demo_data/make_demo.py

clean:
	rm -rf $(VENV) .pytest_cache tests/artifacts
