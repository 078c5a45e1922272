# `make demo` and `make test` set everything up themselves: a .venv with jaxrnn
# installed editable with its dev extra, reinstalled whenever pyproject.toml changes.

VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test lint docs bench clean

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(PYTHON) examples/adding_problem.py

test: $(INSTALLED) lint docs
	$(PYTHON) -m pytest -n 2 --dist loadfile -q

bench: $(INSTALLED)
	$(PYTHON) benchmarks/run.py

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: $(INSTALLED)
	$(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .hypothesis
