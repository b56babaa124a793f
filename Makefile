# Two commands on a fresh machine: `make app` and `make test`. Both run `make setup` first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501
STAMP   := $(VENV)/.setup-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-12)

.PHONY: setup app test lint format bench browser clean-cache

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@# animal-mnist's metadata requires tensorflow, which it never needs for the bundled arrays.
	$(BIN)/python -m pip install -q --no-deps animal-mnist==0.4
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-*
	@touch $@

# Debian's Chromium for the end-to-end browser test (Playwright's own browser download cannot
# work offline). Installed only when we are root and it is missing; otherwise that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed; the browser test will be skipped"; \
	else echo "not root: chromium not installed; the browser test will be skipped"; fi

app: setup
	$(BIN)/streamlit run dashboard/app.py --server.address 127.0.0.1 --server.port $(PORT)

test: setup browser
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/ntk_paths.py

clean-cache:
	rm -rf .cache
