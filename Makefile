# `make demo` and `make test` set everything up themselves: a .venv with jaxrnn
# installed editable with its dev extra, reinstalled whenever pyproject.toml changes,
# and jaxrnn.blas's oneMKL custom call compiled (a few seconds; cached in ~/.cache/jaxrnn).

VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test lint docs bench clean

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	$(PYTHON) -c "from jaxrnn import blas; print('jaxrnn.blas:', blas.status())"
	touch $(INSTALLED)

# About 3 minutes on 2 CPU cores: a char-LSTM on the embedded corpus (the standard library's
# docstrings) for 1500 steps or 150 s, whichever comes first; its validation bits per character
# beside the best Markov chain's, a sample, and the vanishing-gradient figure. Output in runs/demo.
demo: $(INSTALLED)
	$(PYTHON) -m jaxrnn train --out runs/demo --overwrite --baseline \
		--steps 1500 --eval-every 250 --sample-every 750 --time-limit 150
	$(PYTHON) -m jaxrnn probe init --out runs/demo --quiet

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
