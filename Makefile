# tfenv: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint clean

$(BIN)/tfenv: pyproject.toml
	@echo "==> Creating $(VENV) and installing tfenv with its test tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/tfenv

demo: setup
	@echo "==> Creating the example fleet's generated secrets (Jupyter tokens, mode 0600)"
	$(BIN)/tfenv secrets init inventories/gpu.py
	@echo "==> Validating the example fleet (no host is contacted)"
	$(BIN)/tfenv validate inventories/gpu.py
	@echo
	@echo "The local lab fleet (tfenv lab) and the tf_node provisioning steps are not built yet,"
	@echo "so the demo stops after validation. Next: point inventories/gpu.py at your hosts."

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
