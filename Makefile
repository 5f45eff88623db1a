# proctor: `make demo` to see it work, `make test` to check it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck bench clean chromium redis-server postgresql

# Needs Python >= 3.11 with venv; on Debian/Ubuntu, python3-venv is installed when missing (as root).
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "proctor needs Python >= 3.11; found $$($(PYTHON) --version). Set PYTHON=python3.11 (or newer)."; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || ./scripts/apt-install python3-venv
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes.
$(VENV)/.installed-cli: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-cli

demo: $(VENV)/.installed-cli
	$(BIN)/proctor demo

test: $(VENV)/.installed-dev lint typecheck chromium redis-server postgresql
	$(BIN)/python -m pytest

# The web console's browser test drives Debian's Chromium; it is installed when missing (apt, as root),
# and the test is skipped, saying why, where that cannot be done.
chromium:
	@test -x /usr/bin/chromium || ./scripts/apt-install chromium || \
		echo "warning: no /usr/bin/chromium: the console's browser test will be skipped"

# The Redis store's tests start their own redis-server (Debian's; installed when missing, apt, as root),
# and are skipped, saying why, where that cannot be done.
redis-server:
	@command -v redis-server >/dev/null || ./scripts/apt-install redis-server || \
		echo "warning: no redis-server: the Redis store's tests will be skipped"

# The PostgreSQL database's tests start their own server (Debian's initdb and postgres, found under
# /usr/lib/postgresql/*/bin; installed when missing, apt, as root), and are skipped, saying why, where
# that cannot be done.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		./scripts/apt-install postgresql || \
		echo "warning: no PostgreSQL server: the PostgreSQL database's tests will be skipped"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The peers each benchmark compares against go into .venv only, never into the project's dependencies.
BENCH_PEERS := 'loco-agent==0.4.0' 'agent-os-kernel==3.7.0' 'presidio-analyzer==2.2.366'

bench: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet $(BENCH_PEERS)
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/pii.py
	$(BIN)/python bench/runlog.py
	$(BIN)/python bench/approvals.py
	$(BIN)/python bench/stores.py
	$(BIN)/python bench/redis_store.py
	$(BIN)/python bench/postgres_runlog.py
	$(BIN)/python bench/instrument.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
