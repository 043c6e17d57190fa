# Bastion: two commands on a fresh machine.
#   make demo   set everything up, serve the bundled model, send a real chat completion, stop
#   make test   set everything up, run the whole test suite (ruff, mypy, pytest)
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv demo test lint typecheck pytest lock clean

venv:
	VENV=$(VENV) bash scripts/bootstrap.sh

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
