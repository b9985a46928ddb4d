# Two commands set everything up on a fresh machine with Python 3.11:
#   make run   - creates .venv, installs, starts the app with the demo data loaded
#   make test  - creates .venv, installs dev tools, runs the whole test suite
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run serve test lint bench demo reference clean screenshot

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

# A class on a lecture-hall network (README "Serving a class"): make serve ADDRESS=192.168.1.20 [PORT=8501].
# Binds only the address given (never all interfaces by default); XSRF protection on; uploads up to 200 MB;
# class mode (ALLIANCE_CLASS=1): a loaded data set is fitted with every centering × lag × estimator in the background.
serve: $(VENV)/.installed
	@test -n "$(ADDRESS)" || { echo "make serve ADDRESS=<this computer's address on the class network> [PORT=8501]"; exit 2; }
	ALLIANCE_CLASS=1 $(BIN)/streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) \
		--server.enableXsrfProtection true --server.enableCORS true --server.maxUploadSize 200 --server.headless true

test: $(VENV)/.dev-installed
	.ci/system-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not browser"
	$(BIN)/python -m pytest -m browser -s

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	for f in benchmarks/bench_*.py; do echo "== $$f"; PYTHONPATH=. $(BIN)/python $$f; done
	@echo "== benchmarks/bench_class.py --varied (30 students, 30 different analyses, all in the same instant; as make serve runs)"
	PYTHONPATH=. $(BIN)/python benchmarks/bench_class.py --varied --n 30 --warm --class-mode
	@echo "== the same class, the students opening their links over 3 seconds"
	PYTHONPATH=. $(BIN)/python benchmarks/bench_class.py --varied --n 30 --warm --class-mode --arrive 3

# Rerun every script in tests/reference (R with the packages .ci/system-deps installs)
# (and the Python scripts that simulate their inputs), and fail on any numerical difference from the committed
# values (relative 1e-9) or on a file no script writes.
reference: $(VENV)/.dev-installed
	.ci/system-deps
	$(BIN)/python tests/reference/check_reference.py

demo: $(VENV)/.installed
	$(BIN)/python demo_data/make_demo.py

# docs/screenshot.png from the running app (Debian chromium + Playwright; scripts/screenshot.py)
screenshot: $(VENV)/.dev-installed
	$(BIN)/python scripts/screenshot.py

clean:
	rm -rf $(VENV) .pytest_cache tests/artifacts build *.egg-info
