# Two commands do all set-up on a fresh machine:
#   make demo   - builds .venv and runs paramscope on its built-in example
#   make test   - builds .venv with the test extras and runs the whole test suite
# torch==2.13.0 is installed first: on these machines it is a CPU build from local disk, and the
# package's own range (torch>=2.1) is then already satisfied, so no multi-GB CUDA build is pulled.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	DS_BUILD_OPS=0 $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/paramscope

# The HTML report tests open the page in a real headless browser: Debian's chromium package, driven by
# playwright (pip) through executable_path, so no browser download is needed.
CHROMIUM ?= chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

chromium:
	@command -v $(CHROMIUM) >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

test: $(VENV)/.installed chromium
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
