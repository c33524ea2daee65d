# Two entry points: `make run` (the main job) and `make test` (the test suite). Both build the venv;
# `make run` installs the core only (with pip's progress), `make test` adds the test extra.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BENCH  := $(VENV)/bin/bench
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install install-core run test chromium clean

$(VENV)/.core: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed: $(VENV)/.core
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install-core: $(VENV)/.core

install: $(VENV)/.installed

run: install-core
	$(BENCH) run --detector combined --attack fgsm

# the browser test drives Debian's chromium; install it when missing (root, as on CI)
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install chromium
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) results board.html
