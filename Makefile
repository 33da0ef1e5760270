# Ferry: `make run` starts the whole stack on this machine; `make test` runs every test
# against real local services. Both create .venv and install what is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt cli/pyproject.toml | sha256sum | cut -c1-12)
# The infrastructure checkers (checkov, cfn-lint, hadolint) live in a venv of their own:
# checkov pins many libraries that would clash with the app's. tests/deploy runs them.
IAC_VENV  := .venv-iac
IAC_STAMP := $(IAC_VENV)/.installed-$(shell cat deploy/requirements-iac.txt | sha256sum | cut -c1-12)

.PHONY: run test lint bench install iac-tools system-deps clean

install: $(STAMP)

iac-tools: $(IAC_STAMP)

$(STAMP): requirements.txt requirements-dev.txt cli/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	# The `ferry` CLI (cli/, docs/cli.md), editable: its dependencies are pinned above.
	$(BIN)/python -m pip install --quiet --no-deps -e ./cli
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(IAC_STAMP): deploy/requirements-iac.txt
	test -x $(IAC_VENV)/bin/python || $(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/python -m pip install --quiet -r deploy/requirements-iac.txt
	rm -f $(IAC_VENV)/.installed-*
	touch $(IAC_STAMP)

# OpenSSH's sshd (tests, local SFTP) and a PostgreSQL server (tests); installed as root when absent.
system-deps:
	@bash deploy/local/system-deps.sh

run: install
	@bash deploy/local/system-deps.sh --optional
	$(BIN)/python -m deploy.local.stack

test: install iac-tools system-deps
	$(BIN)/python -m deploy.local.postgres
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install system-deps
	$(BIN)/python -m bench.run

clean:
	rm -rf .local staticfiles .pytest_cache .ruff_cache .mypy_cache
