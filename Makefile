# TensorGate. `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help venv demo test lint typecheck unit crds crds-check system-deps clean protos bench bench-scale
.DEFAULT_GOAL := help

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -c constraints.txt -e '.[tf,dev,postgres]'
	touch $@

venv: $(STAMP) ## create .venv with every Python dependency (pinned by constraints.txt)

system-deps: ## Debian packages the integration tests use (prometheus, postgresql, chromium)
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: venv ## train a good and a silently broken model, serve both, run the gate
	$(VENV)/bin/tensorgate demo

crds: venv ## regenerate crds/ and the chart's copy from the Python types
	$(PY) -m tensorgate.cli crd > crds/modeldeployments.tensorgate.dev.yaml
	mkdir -p charts/tensorgate/crds && cp crds/modeldeployments.tensorgate.dev.yaml charts/tensorgate/crds/

protos: venv ## recompile operator/tensorgate/serving/protos/*.proto into the committed modules
	PYTHONPATH=operator $(PY) -m tensorgate.serving.protos.generate

bench: venv ## run every benchmark in benchmarks/ (results in benchmarks/results/; ~10 min on 2 cores)
	@if grep -q '^cluster-tools:' tests/cluster/cluster.mk 2>/dev/null; then $(MAKE) --no-print-directory cluster-tools; fi
	@for b in benchmarks/*.py; do echo "== $$b"; start=$$(date +%s); \
	  PYTHONPATH=$(CURDIR)/operator:$(CURDIR) $(PY) $$b || exit 1; echo "== $$b: $$(( $$(date +%s) - start )) s"; done

lint: venv
	$(VENV)/bin/ruff check operator tests benchmarks
	$(VENV)/bin/ruff format --check operator tests benchmarks
	$(VENV)/bin/lint-imports

typecheck: venv
	$(VENV)/bin/mypy

unit: venv ## fast tests only
	$(VENV)/bin/pytest -q tests/unit

-include tests/cluster/cluster.mk

test: venv system-deps lint typecheck ## ruff, mypy, unit + integration tests (real TF, Prometheus, PostgreSQL, kopf on KMock)
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15 --ignore=tests/e2e

test-cluster: venv system-deps ## the real-control-plane suite, tests/e2e (builds the cluster tools once); CI runs it after `make test`
	@if grep -q '^cluster-tools:' tests/cluster/cluster.mk 2>/dev/null; then $(MAKE) --no-print-directory cluster-tools; fi
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15 tests/e2e

# The operator's cost at 10, 100 and 1,000 ModelDeployments on a cluster of its own (a Service
# range for 1,000 Services); the 1,000-object size dominates the run time (see the README).
BENCH_SCALE_SIZES ?= 10,100,1000
BENCH_SCALE_CLUSTER ?= tensorgate-scale
bench-scale: venv ## operator scale benchmark (kwok cluster) -> benchmarks/results/scale.json
	@if grep -q '^cluster-tools:' tests/cluster/cluster.mk 2>/dev/null; then $(MAKE) --no-print-directory cluster-tools; fi
	export CLUSTER_NAME=$(BENCH_SCALE_CLUSTER) CLUSTER_SERVICE_CIDR=10.0.0.0/16 \
	  CLUSTER_STATE_DIR=$(CURDIR)/.cluster/scale KUBECONFIG_OUT=$(CURDIR)/.cluster/scale/kubeconfig \
	  PYTHONPATH=$(CURDIR)/operator:$(CURDIR) TENSORGATE_BENCH_SCALE=1; \
	bash tests/cluster/up.sh && { $(PY) benchmarks/operator_scale.py --sizes $(BENCH_SCALE_SIZES); \
	  rc=$$?; bash tests/cluster/down.sh; exit $$rc; }

clean:
	rm -rf $(VENV) .cluster .pytest_cache .mypy_cache
