# The two commands of the README: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the GitHub workflow, checked by actionlint; shellcheck/pyflakes off so that every machine
# checks the same (GitHub's runners have shellcheck, this one may not)
ACTIONLINT := $(BIN)/actionlint -shellcheck= -pyflakes= .github/workflows/ci.yml

.PHONY: demo test bench lint dist clean

$(STAMP): pyproject.toml loopback/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./loopback
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/epic-wfms demo

test: $(STAMP)
	bash .ci/services-up
	$(BIN)/ruff check epic_wfms loopback tests bench
	$(ACTIONLINT)
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python bench/streaming_bench.py
	$(BIN)/python bench/brokerage_bench.py
	$(BIN)/python bench/fastpath_bench.py
	$(BIN)/python bench/templates_bench.py
	$(BIN)/python bench/rucio_bench.py
	$(BIN)/python bench/monitor_bench.py
	$(BIN)/python bench/panda_bench.py
	$(BIN)/python bench/idds_bench.py
	$(BIN)/python bench/harvester_bench.py

lint: $(STAMP)
	$(BIN)/ruff check epic_wfms loopback tests bench
	$(ACTIONLINT)

# the wheel and the sdist in dist/, versioned from git tags (setuptools-scm)
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) .epic-wfms build dist *.egg-info
