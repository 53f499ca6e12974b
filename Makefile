# esxcap — every set-up step lives here, so a fresh clone needs nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STATE := demo-state

.PHONY: all venv test lint demo bench clean vcsim

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) vcsim
	$(BIN)/pytest -q

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
	rm -rf $(VENV) $(DEMO_STATE) .pytest_cache .mypy_cache .ruff_cache .hypothesis

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
