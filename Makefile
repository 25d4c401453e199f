# The two commands of the README: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

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
	$(BIN)/pytest

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

clean:
	rm -rf $(VENV) .epic-wfms build *.egg-info
