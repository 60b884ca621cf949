# edgekit developer entry points. `make demo` and `make test` set everything up on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

# torch first, pinned to the local CPU build: an unpinned torch (or a package asking for it) would pull CUDA.
$(STAMP): pyproject.toml exporters/pyproject.toml runtime/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e "runtime[dev]" -e "exporters[dev]" -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/edgekit data show BasicMotions
	$(BIN)/edgekit train BasicMotions --out $(DEMO)/checkpoint --overwrite --json $(DEMO)/train.json
	$(BIN)/edgekit export $(DEMO)/checkpoint --out $(DEMO)/model --overwrite
	$(BIN)/edgekit data to-csv BasicMotions --group test $(DEMO)/test.csv
	$(BIN)/edgekit run $(DEMO)/model $(DEMO)/test.csv --label-column label --out $(DEMO)/predictions.jsonl
	$(BIN)/edgekit bench $(DEMO)/model --json $(DEMO)/bench.json

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/runtime_latency.py

clean:
	rm -rf runs .pytest_cache
