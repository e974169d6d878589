# The two commands a new user needs: `make run` (install + dvc repro) and `make test` (install + pytest).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test ui lock clean-venv

# uv, pinned, installs the lock in about a third of pip's time (its downloads run in parallel);
# where uv cannot be installed or fails, pip installs the same lock. --compile-bytecode, as pip does:
# otherwise every stage of the first `dvc repro` compiles TensorFlow's modules again (measured: the
# first run 257 s without it, 234 s with it, bench/RESULTS.md).
UV_VERSION := 0.13.9
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
UV_PIP := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

# Installs the exact versions in requirements.lock, then the project itself (editable, no deps).
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	{ $(PIP) uv==$(UV_VERSION) && $(UV_PIP) -r requirements.lock \
	  && $(UV_PIP) --no-deps --no-build-isolation -e .; } \
	|| { echo "uv $(UV_VERSION) unavailable or failed: installing with pip" >&2 \
	  && $(PIP) -r requirements.lock && $(PIP) --no-deps --no-build-isolation -e .; }
	touch $@

run: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Two workers; tests that share a fixture's pipeline run stay together (xdist_group), the rest are
# handed out one by one in collection order, which tests/conftest.py puts costliest first.
test: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder

# The MLflow UI on this machine only, over the project's store.
ui: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/activeseg ui

# Re-resolve requirements.txt into requirements.lock in a scratch venv.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -r requirements.txt
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -vE '^(pip|setuptools|wheel)==' > requirements.lock
	rm -rf .venv-lock

clean-venv:
	rm -rf $(VENV)
