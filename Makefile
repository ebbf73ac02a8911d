# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv/ first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gongji demo

test: $(STAMP) browser
	$(VENV)/bin/pytest -q

# The dashboard's browser test drives Debian's chromium (playwright downloads no browser here), with
# a small CJK font so region names render; installed once, when missing (root, as on CI).
browser:
	@command -v chromium >/dev/null && fc-list :lang=zh | grep -q . || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null)

bench: $(STAMP)
	$(VENV)/bin/gongji bench

clean:
	rm -rf $(VENV) .pytest_cache
