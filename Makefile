# Bastion: two commands on a fresh machine.
#   make demo   set everything up, serve the bundled model, send a real chat completion, stop
#   make test   set everything up, run the whole test suite (ruff, mypy, pytest)
VENV ?= .venv
# Debian packages the tests need (installed by scripts/bootstrap.sh when missing)
APT_PACKAGES ?= iproute2 util-linux
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv demo test lint typecheck pytest lock clean

venv:
	VENV=$(VENV) BASTION_APT_PACKAGES="$(APT_PACKAGES)" bash scripts/bootstrap.sh

demo: venv
	$(PY) scripts/demo.py

lint: venv
	$(VENV)/bin/ruff check src tests bench scripts

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

# Regenerate the lock file from the current environment (run after changing dependencies).
lock: venv
	$(VENV)/bin/pip freeze --exclude-editable | grep -v -E '^(bastion|llama.cpp.python) ' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
