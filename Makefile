# bedrock-forge — the commands in docs/design.md §8. Everything runs from .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: setup demo test test-fast test-slow test-machines test-permissions bench lint stack clean compose-test

setup: $(VENV)/.installed   ## create .venv and install the project + dev tools (idempotent, CPU torch only)

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first, from the local wheel (PIP_FIND_LINKS): nothing later may pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if '+cpu' in v or not torch.cuda.is_available() else f'non-CPU torch {v}')"
	# the AWS CLI for the emulator's real-client test (tests/emulator/test_aws_cli.py): its own venv, it pins botocore
	test -x .venv-awscli/bin/aws || ($(PYTHON) -m venv .venv-awscli && .venv-awscli/bin/pip install -q awscli==1.46.2) \
	  || echo "awscli not installed: tests/emulator/test_aws_cli.py will install it on first use"
	touch $@

demo: setup   ## run the whole pipeline on examples/ against the embedded emulator
	$(VENV)/bin/forge run examples/banking77.yaml --runs-dir runs --emulator

# The suite waits more than it computes (emulator latencies, Prefect servers, browsers): two pytest-xdist workers halve
# its wall time on 2 cores. --dist loadfile keeps each file on one worker (module fixtures, in-file order). TEST_WORKERS=0
# runs it in one process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: setup   ## the test suite (what .ci/run calls): everything but the lost-machine scenarios (test-machines), ~10 min on 2 cores
	$(VENV)/bin/pytest -q $(XDIST) -m "not machines"

test-machines: setup   ## lost or stopped machines for real: process workers killed, two workers sharing one account, make stack Ctrl-C, a start_from champion run killed mid-create (~9 min; .ci/run runs it after the suite)
	$(VENV)/bin/pytest -q -p no:cacheprovider -m machines tests/deployments tests/flows

test-fast: setup   ## the quick inner loop: skips the slow fault scenarios and the real Prefect server
	$(VENV)/bin/pytest -q $(XDIST) -m "not slow and not server"

test-slow: setup   ## only the slow fault scenarios (throttling storm, 5xx bursts, SIGTERM, SIGKILL)
	$(VENV)/bin/pytest -q -m slow

test-permissions: setup   ## every example config's whole pipeline under exactly `forge permissions` (enforcing emulator, ~4-9 min)
	FORGE_PERMISSIONS_MATRIX=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/permissions/test_pipeline_under_policy.py

bench: setup   ## benchmarks -> bench/results.md
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check .
	# pip-audit needs its vulnerability service (network): here it audits nothing, and says so (docs/security.md)
	-$(VENV)/bin/pip-audit --skip-editable --strict --progress-spinner off || echo "pip-audit: not audited (no vulnerability service reachable) or vulnerable packages found — see above and docs/security.md"

stack: setup   ## Prefect server + worker + emulator without Docker (make stack STACK_ARGS="--database postgres")
	$(PY) -m forge.stack $(STACK_ARGS)

compose-test: setup   ## docker-compose stack for real (tests/compose): Docker from Debian if missing, dockerd, build, pipeline, worker kills
	FORGE_COMPOSE_TEST=1 $(VENV)/bin/pytest -q -s -p no:cacheprovider -m compose tests/compose

clean:
	rm -rf runs .forge-cache .pytest_cache
