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
	@echo "==> Bringing up the local lab: 3 hosts, registry, TF images, GPU/NFS simulators (installs Docker if needed)"
	$(BIN)/tfenv lab up --hosts 3
	@echo "==> Validating the lab's declared state (GPU simulators, registry, image lock)"
	$(BIN)/tfenv validate inventories/lab.py
	@echo "==> GPU host base on every lab host: Docker, pinned NVIDIA driver (reboot when due), toolkit"
	$(BIN)/pyinfra -y inventories/lab.py deploys/gpu_base.py
	@echo "==> Again: nothing left to change"
	$(BIN)/pyinfra -y inventories/lab.py deploys/gpu_base.py
	@echo
	@echo "Not built yet: tf_node's container steps (registry login, images, secrets, NFS,"
	@echo "dev containers), so the demo stops here. tfenv lab down removes the lab."

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
