# tfenv: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test check lint clean mutation bench-fleet

$(BIN)/tfenv: pyproject.toml
	@tools/system-packages
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
	@echo "==> The team image (images/team-dev.yaml): pip pinned with hashes, built, gated, pushed, locked"
	$(BIN)/tfenv image lock-deps images/team-dev.yaml
	$(BIN)/tfenv image build images/team-dev.yaml
	@echo "==> TF node on every lab host: GPU base (Docker, pinned driver, reboot when due, toolkit),"
	@echo "    registry login, NFS checkpoints, secret files, the dev container, a health check each"
	$(BIN)/pyinfra -y inventories/lab.py deploys/tf_node.py
	@echo "==> Again: nothing left to change"
	$(BIN)/pyinfra -y inventories/lab.py deploys/tf_node.py
	@echo "==> Reaching the dev containers (SSH as researcher, Jupyter with its token)"
	$(BIN)/tfenv lab access
	@echo "tfenv lab down removes the lab."

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The full suite (what .ci/run runs): lint, every test, lab tests included; ends
# with the time table (each module's wall time, the lab's setup, the total).
# One pytest process: the lab tests keep this machine's 2 cores busy, so a second
# lane beside it (tried: two labs, two processes) only slowed both.
test: lint
	$(BIN)/python -m pytest -q --durations=30

# The fast tier, for every change before a commit: lint and every non-lab test, in
# two pytest processes side by side (about 2 minutes here; no Docker engine needed).
# The pyinfra runs of every bad input take half the time: they get one process.
# (Not pytest-xdist: pyinfra_cli's gevent monkey-patching, imported by the fact
# fixture tests, stops its workers.)
SLOW_UNIT := tests/test_bad_input_pyinfra.py
check: lint
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m "not lab" $(SLOW_UNIT) > .check-slow.log 2>&1 & \
	slow=$$!; \
	$(BIN)/python -m pytest -q -m "not lab" --ignore=$(SLOW_UNIT) --durations=10; rest=$$?; \
	wait $$slow; code=$$?; cat .check-slow.log; rm -f .check-slow.log; \
	[ $$rest -eq 0 ] && [ $$code -eq 0 ]

# Mutation testing of the pure core and the fleet jobs (about 40 min on 2 cores; not in
# CI). mutmut 3's timeout thread signals (SIGXCPU) the PIDs of its finished workers,
# which by then may belong to any other process on the machine: it runs in a PID
# namespace of its own where unshare allows (root), else run nothing beside it. (A shell
# is that namespace's PID 1: mutmut as PID 1 would reap orphans it does not know.)
mutation: setup
	$(BIN)/pip install --quiet 'mutmut>=3.3,<4'
	rm -rf mutants
	@if unshare --pid --fork --mount-proc true 2>/dev/null; then \
	  unshare --pid --fork --mount-proc sh -c '"$$@"; exit $$?' sh \
	    $(BIN)/mutmut run --max-children $$(nproc) || true; \
	else \
	  echo "(no PID namespace here: run nothing else beside mutmut)"; \
	  $(BIN)/mutmut run --max-children $$(nproc) || true; \
	fi
	$(BIN)/python tools/mutation-score

# The fleet benchmark: a 30-host scale lab, tfenv beside the one-ssh bound, Ansible
# and plain pyinfra at 1, 10 and 30 hosts; writes benchmarks/RESULTS.md (about an
# hour on 2 cores, most of it provisioning 30 hosts; not in CI). ARGS: see --help.
bench-fleet: setup
	$(BIN)/python benchmarks/fleet.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info mutants .check-slow.log
