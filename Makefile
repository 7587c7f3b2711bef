# The only entry points a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-all lint demo bench gpu-kit clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ''

demo: install
	$(BIN)/seqkit demo $(DEMO_ARGS)

bench: install
	$(BIN)/seqkit bench losses
	$(BIN)/seqkit bench train
	$(BIN)/seqkit bench decode

# gpu-kit/: the wheels a lent GPU machine without network lacks, and run.sh for seqkit bench gpu
gpu-kit:
	PY=$(PY) bash .ci/gpu-kit/build.sh gpu-kit

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
