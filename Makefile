# Two commands do everything on a fresh Debian machine (Python 3.11, root):
#   make demo   build a sample corpus and run `clipvip prepare` on it with Beam and Ray
#   make test   lint and run the whole test suite
# Both install what is missing first (Debian's ffmpeg, .venv, this package in editable mode).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSTEM_PACKAGES := ffmpeg chromium

.PHONY: install system venv demo test lint format bench train-demo clean

install: system $(STAMP)

# Debian packages: ffmpeg/ffprobe for cutting clips, chromium to check the HTML report renders.
system:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Debian's own python3.11 makes no venv without its python3.11-venv package (no ensurepip); a
# failed attempt leaves .venv/bin/python behind, which would satisfy this target next time, so
# it is removed before the package is installed and the venv made again.
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { \
	  rm -rf $(VENV); \
	  echo "$(PYTHON) cannot make a venv: installing Debian's python3.11-venv"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends python3.11-venv \
	  && $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }; }

# torch is pinned first and alone so that pip takes the local CPU build and never an unpinned CUDA one.
# A first install needs about 3.5 GB: the 2.7 GB venv and pip's temporary copy of the torch wheel.
# pip's own error on a full disk comes after minutes and names neither, so say it first.
$(STAMP): pyproject.toml | $(BIN)/python
	@for d in $(VENV) $${TMPDIR:-/tmp}; do \
	  free=$$(df -Pk "$$d" 2>/dev/null | awk 'NR==2 {print $$4}'); \
	  if [ -n "$$free" ] && [ "$$free" -lt 3500000 ]; then \
	    echo "warning: $$((free / 1024)) MiB free under $$d; a first install needs about 3.5 GB (venv + pip's temporary files)"; \
	  fi; \
	done
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/clipvip demo --out demo_out

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two passes: the suite on both cores (pytest-xdist), then the kill sweeps alone. Those place their
# SIGKILLs by the timing of a clean run, which a neighbour on the other core would skew.
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not serial"
	$(BIN)/python -m pytest -q -m serial

bench: install
	$(BIN)/python -m benchmarks.middle_frame
	$(BIN)/python -m benchmarks.engines
	$(BIN)/python -m benchmarks.ofa
	$(BIN)/python -m benchmarks.handoff
	$(BIN)/python -m benchmarks.gap
	$(BIN)/python -m benchmarks.train
	$(BIN)/python -m benchmarks.clip_decode
	$(BIN)/python -m benchmarks.clips_per_video
	$(BIN)/python -m benchmarks.retry
	$(BIN)/python -m benchmarks.adapters

# Prepare the demo corpus, train the tiny CLIP-ViP on it, evaluate retrieval.
train-demo: install
	$(BIN)/clipvip demo --out demo_out --runners local
	$(BIN)/clipvip train --config tiny --shards demo_out/local --val-shards demo_out/local --out runs/tiny
	$(BIN)/clipvip evaluate --checkpoint runs/tiny --shards demo_out/local

clean:
	rm -rf demo_out .pytest_cache .ruff_cache
