# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv/ first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean compose-validator browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gongji demo

test: $(STAMP) compose-validator browser
	$(VENV)/bin/pytest -q

# tests/unit/test_deploy.py validates docker-compose.yml with Debian's docker-compose (`config -q`).
# Installed here when missing and we may (root with apt-get, as in CI); otherwise that check skips.
compose-validator:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing docker-compose (apt-get) to validate docker-compose.yml"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      docker-compose >/dev/null; } || echo "make: docker-compose could not be installed"; \
	  else echo "make: docker-compose not installed: the compose file check is skipped"; fi; }

# The dashboard's browser test drives Debian's chromium (playwright downloads no browser here), with
# a small CJK font so region names render; installed once, when missing (root, as on CI).
browser:
	@command -v chromium >/dev/null && fc-list :lang=zh | grep -q . || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null)

bench: $(STAMP)
	$(VENV)/bin/gongji bench

clean:
	rm -rf $(VENV) .pytest_cache
