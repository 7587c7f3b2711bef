# The only entry points a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: install test test-all lint demo bench docs gpu-kit clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

test-all: install $(DOCS_STAMP)
	$(BIN)/python -m pytest -m ''

demo: install
	$(BIN)/seqkit demo $(DEMO_ARGS)

bench: install
	$(BIN)/seqkit bench losses
	$(BIN)/seqkit bench train
	$(BIN)/seqkit bench decode

# The documentation site (docs/conf.py) into site/: strict, so a warning, a broken link or an
# unresolved reference fails it (test-all builds it too, in tests/test_docs.py).
docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html -c docs . site
	@echo "docs: open site/index.html"

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,docs]'
	touch $(DOCS_STAMP)

# gpu-kit/: the wheels a lent GPU machine without network lacks, and run.sh for seqkit bench gpu
gpu-kit:
	PY=$(PY) bash .ci/gpu-kit/build.sh gpu-kit

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info site docs/_generated
