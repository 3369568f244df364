# Two entry points for a fresh machine: `make demo` and `make test`.
# Both bootstrap .venv/ from this repo's own files; re-running is a no-op once installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
# The server tests start the real tritonserver (from the nvidia-pytriton wheel) and are part of the default run.
PYTEST_ARGS ?= -m "not slow and not gpu"

.PHONY: venv demo serve cluster repository test test-all lint bench reliability clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Generates a dual-phase phantom, starts tritonserver, calls it with the gRPC client, writes the outputs,
# stops the server and prints a summary.
demo: $(STAMP)
	$(VENV)/bin/s4c demo --out $(DEMO_OUT)

# Weights (ONNX) and configs into model_repository/ from the embedded checkpoints.
repository: $(STAMP)
	$(VENV)/bin/s4c export repository --model-repository model_repository

serve: $(STAMP)
	$(VENV)/bin/s4c serve --model-repository model_repository

# N replicas behind nginx (a gRPC load balancer) on loopback; Ctrl-C stops them all.
REPLICAS ?= 2
PORT ?= 8001
cluster: $(STAMP)
	$(PY) deploy/local/cluster.py --model-repository model_repository --replicas $(REPLICAS) --port $(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks client model_repository export deploy

test: $(STAMP) lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu"

# Core ratios, then the serving benchmark against the real tritonserver and perf_analyzer (installed by
# benchmarks/install_perf_analyzer.sh) -> benchmarks/results/{core,cpu}.json, results/perf_analyzer/*.csv.
bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_serving.py

# Load, faults, bad inputs and security defaults against the real server -> benchmarks/results/reliability.json
# (SOAK=MINUTES for a long run).
reliability: $(STAMP)
	$(PY) benchmarks/reliability.py $(if $(SOAK),--soak $(SOAK),)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .hypothesis
