# ums-find: every set-up step lives here; see README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STACK := services/stack.sh
APP := services/app.sh
STACK_ENV := set -a && . .run/stack/env && set +a
API_PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: help venv run stop stack-up stack-down test unit lint bench bench-quick bench-cluster bench-tail bench-tail-quick \
	bench-growth bench-readers bench-read-cache bench-hot-path soak clean \
	image compose-up compose-down k8s-up k8s-down deploy-test ci-deploy

help:
	@echo "make run    start Kafka, Redis, MariaDB, the consumer and the API; seed demo users"
	@echo "make stop   stop the consumer, the API and the stack"
	@echo "make test   the same set-up, then the whole test suite (stack stopped afterwards)"
	@echo "make unit   unit tests only (no servers)"
	@echo "make lint   ruff and mypy"
	@echo "make bench  benchmarks (bench/, README there), long: about an hour"
	@echo "make bench-quick  the same harness, small and short (figures not for quoting)"
	@echo "make bench-cluster  1, 2 and 3 consumers into the 3-master Redis Cluster, about 10 minutes"
	@echo "make bench-tail  tail latency below saturation by configuration (issue 22), under 15 minutes"
	@echo "make bench-readers a rebuild under reads: readers' p99 by script size and CPU priority, ~12 min"
	@echo "make bench-read-cache  the API's read cache on and off, uniform and Zipf names, ~20 min"
	@echo "make bench-growth  1M, 3M and 10M users: rebuild, gc, backfill, reconcile, memory (GROWTH_SIZES), long"
	@echo "make soak   long fault tests, long"
	@echo "make image         the production image (docker build; local base, no registry needed)"
	@echo "make compose-up    the whole system in docker compose (stand-in images); API on 127.0.0.1:8080"
	@echo "make compose-down  stop it and throw its data away"
	@echo "make k8s-up        a single-node Kubernetes here, the stand-ins and ums-find (k8s/overlays/local)"
	@echo "make k8s-down      stop the node and remove its state"
	@echo "make deploy-test   image, compose and Kubernetes runs (tests/deploy, marker deploy), long"
	@echo "make ci-deploy     CI's deployment part: image and compose runs, everything stopped after"

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "installing $(PYTHON)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip>=24'
	$(BIN)/pip install -q -c constraints.txt -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

run: venv stack-up
	$(STACK_ENV) && $(BIN)/ums-find --log-text topics
	$(STACK_ENV) && UMS_API_PORT=$(API_PORT) $(APP) start
	$(STACK_ENV) && $(BIN)/ums-find --log-text seed --count 1000
	@$(STACK_ENV) && $(BIN)/python -m devtools.wait_for_user "http://127.0.0.1:$(API_PORT)" KrishnaMohan
	@echo
	@echo "ums-find is running. Try:"
	@echo "  curl -i http://127.0.0.1:$(API_PORT)/user/KrishnaMohan"
	@echo "Logs: .run/app/*.log   Stop: make stop"

stop:
	-$(APP) stop
	$(STACK) down

test: venv
	$(STACK) with -- $(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain adapters consumer api ums_find devtools

bench: venv
	$(STACK) with -- $(BIN)/python -m bench.run

bench-quick: venv
	BENCH_QUICK=1 $(STACK) with -- $(BIN)/python -m bench.run

# 1, 2 and 3 consumers into the 3-master Redis Cluster (bench/cluster_scaling.py); ~10 minutes
bench-cluster: venv
	$(STACK) with -- $(BIN)/python -m bench.cluster_scaling

# Tail latency below saturation (issue 22): configurations side by side, open loop, <= 15 min.
# The py313 configuration needs `bench/py313.sh up` (root) first; it is skipped otherwise.
bench-tail: venv
	$(STACK) with -- $(BIN)/python -m bench.tail

bench-tail-quick: venv
	BENCH_QUICK=1 $(STACK) with -- $(BIN)/python -m bench.tail
bench-growth: venv
	$(STACK) with -- $(BIN)/python -m bench.growth

# The API's hot path against Flask answering every request, and the ceiling (bench/hot_path.py); ~9 min with 3 rounds
bench-hot-path: venv
	$(STACK) with -- $(BIN)/python -m bench.hot_path $(HOT_PATH_ARGS)

# The API's read cache against plain reads (bench/read_cache.py); ~20 min with 3 rounds
bench-read-cache: venv
	$(STACK) with -- $(BIN)/python -m bench.read_cache $(READ_CACHE_ARGS)

# What a rebuild costs the readers, by script size and niceness (bench/readers_first.py); ~12 min
bench-readers: venv
	$(STACK) with -- $(BIN)/python -m bench.readers_first

soak: venv
	$(STACK) with -- $(BIN)/pytest -m soak tests/faults $(PYTEST_ARGS)

# ---- deployment runs (docs/deploy.md): Docker engine, compose, a Kubernetes node, all local
DOCKER := services/docker.sh
COMPOSE := $(DOCKER) compose

image:
	$(DOCKER) up
	docker/build-images.sh app

compose-up:
	$(DOCKER) images
	$(COMPOSE) up -d --wait
	@echo
	@echo "ums-find runs in docker compose. Try:"
	@echo "  curl -i http://127.0.0.1:8080/user/KrishnaMohan"
	@echo "Logs: $(COMPOSE) logs -f   Stop: make compose-down"

compose-down:
	$(COMPOSE) down --volumes --remove-orphans

k8s-up:
	services/k8s.sh up
	@echo "kubectl: services/k8s.sh kubectl -n ums-find-dev get pods   Stop: make k8s-down"

k8s-down:
	services/k8s.sh down

deploy-test: venv
	$(DOCKER) images
	$(BIN)/pytest -m deploy tests/deploy $(PYTEST_ARGS)

# CI's deployment part (.ci/run, after `make test`): image and compose stack tested for real, with
# time limits, torn down by a trap (services/ci-deploy.sh). No Kubernetes node: docs/deploy.md says why.
ci-deploy: venv
	services/ci-deploy.sh

clean: stop
	rm -rf .run $(VENV)
