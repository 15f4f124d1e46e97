# Two entry points: `make demo` and `make test`. Each sets up what it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install when the dependency list changes.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SYSSTAMP := $(VENV)/.system-deps
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint bench example venv system-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[convert,torch,farm,report,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

system-deps: $(SYSSTAMP)

$(SYSSTAMP): scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	@mkdir -p $(VENV) && touch $@

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/demo.py

test: $(STAMP) $(SYSSTAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(SYSSTAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# ai-edge-litert's own benchmark script needs ai-edge-litert 2.3, which onnx2tf's pin keeps out of
# .venv; bench_profile compares against it from a venv of its own.
LITERT_VENV := .pytest_cache/d/edgetk_bench_profile/litert-venv
$(LITERT_VENV)/bin/python:
	$(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/pip install --quiet ai-edge-litert==2.3.0

bench: $(STAMP) $(SYSSTAMP) $(LITERT_VENV)/bin/python
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench

# Re-train the shipped example (seeded: the same files come out).
example: $(STAMP)
	$(BIN)/python scripts/train_digits.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
