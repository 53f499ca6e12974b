# esxcap — every set-up step lives here, so a fresh clone needs nothing but Python 3.11+ and make.
# What make installs is uv.lock, exactly (`uv sync --locked`); `make lock` refreshes it from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
UV_VERSION := 0.13.9
UV_HOME := .venv-uv
UV     := $(UV_HOME)/bin/uv
# uv: the interpreter make was given (never a downloaded one), the environment in .venv
UV_ENV := UV_PYTHON=$(PYTHON) UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(VENV)
DEMO_STATE := demo-state

.PHONY: all venv lock test test-fast lint demo bench clean vcsim

all: test

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV_ENV) $(UV) sync --quiet --locked --extra dev
	touch $(STAMP)

venv: $(STAMP)

lock: | $(UV)
	$(UV_ENV) $(UV) lock --upgrade

test: $(STAMP) vcsim
	$(BIN)/pytest -q

# the pure tier: no simulator, no sshd, no tshark (under 30 s)
test-fast: $(STAMP)
	$(BIN)/pytest -q -m pure

lint: $(STAMP)
	$(BIN)/ruff check esxcap tests $(wildcard bench)
	$(BIN)/ruff format --check esxcap tests $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh $(DEMO_STATE)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(UV_HOME) $(DEMO_STATE) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# govmomi's vCenter simulator for the vCenter tests, built offline from Debian's golang-go and
# golang-github-vmware-govmomi-dev (.ci/run installs them); without them the vCenter tests skip.
VCSIM := build/vcsim
GOVMOMI := /usr/share/gocode/src/github.com/vmware/govmomi/simulator
vcsim: $(VCSIM)

$(VCSIM): tests/vcsim/main.go
	@if command -v go >/dev/null && [ -d $(GOVMOMI) ]; then \
	  mkdir -p build && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$(CURDIR)/build/gocache \
	    go build -o $(VCSIM) tests/vcsim/main.go; \
	else echo "vcsim not built (needs golang-go and golang-github-vmware-govmomi-dev): vCenter tests skip"; fi
