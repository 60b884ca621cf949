# edgekit developer entry points. `make demo` and `make test` set everything up on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: setup demo test test-slow test-arm bench clean test-packages teacher

setup: $(STAMP)

# torch first, pinned to the local CPU build: an unpinned torch (or a package asking for it) would pull CUDA.
$(STAMP): pyproject.toml exporters/pyproject.toml runtime/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e "runtime[dev]" -e "exporters[dev]" -e ".[dev,bench]"
	touch $(STAMP)

# The recipe end to end (pretrain, finetune, student-size sweep, distil, export, bundle, bench), the bundle run on
# the test split streamed as CSV as on the board, and the HTML report. A second `make demo` skips every unchanged
# stage.
demo: setup
	$(BIN)/edgekit data show BasicMotions
	$(BIN)/edgekit pipeline recipes/basicmotions.toml --out $(DEMO) --quiet
	$(BIN)/edgekit data to-csv BasicMotions --group test $(DEMO)/test.csv
	$(BIN)/edgekit run $(DEMO)/bundle/bundle $(DEMO)/test.csv --label-column label --out $(DEMO)/predictions.jsonl
	$(BIN)/edgekit report $(DEMO)

test: setup test-packages
	$(BIN)/python -m pytest -q

# Debian packages two tests use: Chromium renders `edgekit report`, OpenSSH's server is the loopback board of
# `edgekit deploy`. Installed only where missing and apt is usable as root; otherwise those tests are skipped with
# their reason.
test-packages:
	@missing=""; test -x /usr/bin/chromium || missing="chromium"; test -x /usr/sbin/sshd || \
		missing="$$missing openssh-server"; test -z "$$missing" || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
		echo "not installed: $$missing (the tests that need them will be skipped)"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The board runtime on arm64 Debian 12 under qemu-user (Cortex-A72 and A76), every prediction compared with this
# machine's (tests/test_arm.py). Debian's qemu-user-static and debootstrap are installed where apt is usable as
# root; the root file system and wheels are cached in ~/.cache/edgekit/arm64. Needs the package index and a Debian
# mirror the first time; about 15 minutes.
test-arm: setup
	@test -x /usr/bin/qemu-aarch64-static -a -x /usr/sbin/debootstrap || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap >/dev/null; } || \
		echo "qemu-user-static and debootstrap not installed: the arm64 tests will be skipped"
	$(BIN)/python -m pytest -q -m arm -rs

# Rebuild the general teacher shipped in edgekit/teacher/general/ (about 35 minutes on 2 CPU cores; a killed run
# continues where it stopped).
teacher: setup
	$(BIN)/edgekit pretrain general --out runs/general-teacher

# Side-by-side measurements of the runtime and the exports (JSON + tables under benchmarks/results/).
bench: setup
	$(BIN)/python benchmarks/runtime_vs_torch.py
	$(BIN)/python benchmarks/export_formats.py

clean:
	rm -rf runs .pytest_cache
