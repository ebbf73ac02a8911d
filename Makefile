# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv/ first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gongji demo

test: $(STAMP)
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(VENV)/bin/gongji bench

clean:
	rm -rf $(VENV) .pytest_cache
