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

# The recipe end to end (pretrain, finetune, distil, export, bundle, bench), then the bundle run on the test split
# streamed as CSV, as on the board. A second `make demo` skips every unchanged stage.
demo: setup
	$(BIN)/edgekit data show BasicMotions
	$(BIN)/edgekit pipeline recipes/basicmotions.toml --out $(DEMO) --quiet
	$(BIN)/edgekit data to-csv BasicMotions --group test $(DEMO)/test.csv
	$(BIN)/edgekit run $(DEMO)/bundle/bundle $(DEMO)/test.csv --label-column label --out $(DEMO)/predictions.jsonl

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/runtime_latency.py

clean:
	rm -rf runs .pytest_cache
