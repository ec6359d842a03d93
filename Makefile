# scope-loadtest: `make demo` runs the main job on the embedded simulator; `make test` runs the whole suite.
# Works on a fresh machine with only Python 3.11 and pip: uv is installed with pip when missing.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: help env demo test test-fast bench clean

help:
	@echo "make demo       run the main job on an embedded simulated Scope fleet"
	@echo "make test       build the environment from uv.lock and run the whole test suite"
	@echo "make test-fast  the unit tests only (not integration, not slow): under 2 minutes"
	@echo "make bench      print benchmark numbers (simulator, frame checks, ...)"

env:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(UV) sync --frozen --python 3.11

demo: env
	$(UV) run --frozen python -m deployments.demo

# Two xdist workers: most integration tests wait on real processes (simulator, Prefect, brokers),
# so two interleave well on two cores (three overloaded it: the timing tests' runs were declared
# void). Each worker starts its own session fixtures (Prefect server).
TEST_WORKERS ?= 2

test: env
	@./scripts/ensure-debian-packages prometheus-pushgateway prometheus
	$(UV) run --frozen pytest -p no:cacheprovider -n $(TEST_WORKERS)

# Unit tests: no real processes (simulator, Prefect server, Prometheus), nothing marked slow.
test-fast: env
	$(UV) run --frozen pytest -p no:cacheprovider -n $(TEST_WORKERS) -m "not integration and not slow"

bench: env
	@for script in bench/bench_*.py; do echo "== $$script"; $(UV) run --frozen python $$script || exit 1; done

clean:
	rm -rf .venv data .bench
