# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# the base install: no extras (what `pip install agent-context-compactor` gives)
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/compactor replay --demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info

# Mutation testing (docs/testing.md): mutmut mutates the core modules named in pyproject's
# [tool.mutmut] (planner, units, validator, store, redaction, ledger) one small change at a
# time and runs the fast core tests that cover each mutant; then lists the survivors.
# Slow (tens of minutes on 2 cores) and not part of `make test`. Work files: ./mutants/.
# Only some mutants: make mutation MUTANTS='compactor._validate*'
.PHONY: mutation
MUTANTS ?=
mutation: $(VENV)/.installed-mutation
	$(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results

$(VENV)/.installed-mutation: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,mutation]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-test
