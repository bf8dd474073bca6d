# Kiln: `make` lists the targets. Two commands set up a fresh machine: `make serve` (creates
# .venv, trains the demo models if the store is empty, serves on 127.0.0.1:3000) and `make test`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Deploy checkers (checkov, hadolint) pin packages that clash with the project's: own venv.
TOOLS ?= .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
export CHECKOV ?= $(abspath $(TOOLS))/bin/checkov
export HADOLINT ?= $(abspath $(TOOLS))/bin/hadolint
SMS_DATA ?= ../shared/data/sms
DEMO_SPECS := training/specs/breast-cancer.yaml training/specs/wine.yaml \
              training/specs/diabetes.yaml training/specs/churn.yaml
PYTEST_ARGS ?=

HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: help install lock protos train serve demo-data test test-fast lint format typecheck audit check clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Kiln needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

install: $(STAMP) $(TOOLS_STAMP) ## Create .venv (requirements.lock) and .venv-tools (requirements-tools.lock)

$(TOOLS_STAMP): requirements-tools.lock
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet -r requirements-tools.lock
	@touch $@

# Each lock as its header says it was made (the arguments in the same order, so the header
# stays the same). uv keeps a lock's current pins, adding or changing only what pyproject.toml
# asks for; `uv pip compile ... --upgrade-package NAME` moves one. requirements-ray.lock is
# constrained by requirements-train.lock (the Ray scoring image is the training image plus
# Ray, with the same pins), so it comes after it. requirements-tools.lock is kept by hand.
LOCK_PLATFORM := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
lock: $(STAMP) ## Re-pin the serve, train, ray and dev locks from pyproject.toml (uv pip compile)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml -o requirements-serve.lock $(LOCK_PLATFORM)
	$(BIN)/uv pip compile pyproject.toml --extra train -o requirements-train.lock $(LOCK_PLATFORM)
	$(BIN)/uv pip compile pyproject.toml --extra train --extra ray -c requirements-train.lock \
	  -o requirements-ray.lock $(LOCK_PLATFORM)
	$(BIN)/uv pip compile pyproject.toml --extra train --extra dev --extra ray $(LOCK_PLATFORM) \
	  -o requirements.lock

# The Open Inference Protocol's gRPC stubs (service/grpc/proto/), generated from the official
# .proto copied there. The sed gives the messages a descriptor pool of their own: tritonclient
# and kserve register the same `inference.*` names from their own .proto files in the default
# pool, where two files defining one name cannot both be imported in one process.
PROTO_ROOT ?= .
PROTO := service/grpc/proto/open_inference_grpc.proto
protos: $(STAMP) ## Regenerate the gRPC stubs in service/grpc/proto/ from its .proto (grpcio-tools)
	$(BIN)/python -m grpc_tools.protoc -I $(PROTO_ROOT) --python_out=$(PROTO_ROOT) \
	  --pyi_out=$(PROTO_ROOT) --grpc_python_out=$(PROTO_ROOT) $(PROTO_ROOT)/$(PROTO)
	sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/POOL = _descriptor_pool.DescriptorPool()  # Kiln: its own pool (make protos says why)\nDESCRIPTOR = POOL.AddSerializedFile(/' \
	  $(PROTO_ROOT)/$(PROTO:.proto=_pb2.py)

train: $(STAMP) ## Train, verify and register the demo models (and sms-spam when SMS_DATA exists)
	$(BIN)/kiln train $(DEMO_SPECS)
	@if [ -d "$(SMS_DATA)" ]; then \
	  $(BIN)/kiln train training/specs/sms-spam.yaml --data "$(SMS_DATA)/train-data.tsv" --data "$(SMS_DATA)/valid-data.tsv"; \
	else echo "sms-spam skipped: no $(SMS_DATA) (set SMS_DATA=dir with train-data.tsv)"; fi

serve: $(STAMP) ## Serve every production model on 127.0.0.1:3000 (trains the demos if the store is empty)
	@$(BIN)/python -c 'import sys; from kiln.store import list_models; sys.exit(0 if list_models()[0] else 1)' \
	  || { echo "the model store is empty: training the demo models first"; $(MAKE) --no-print-directory train; }
	$(BIN)/bentoml serve --host $(HOST) --port $(PORT)

demo-data: $(STAMP) ## Regenerate training/data/churn.csv (deterministic)
	$(BIN)/python -m training.demo_data

test: $(STAMP) $(TOOLS_STAMP) ## Run every test (slow ones included), as CI does
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(TOOLS_STAMP) ## Run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP) ## Check style and formatting (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Reformat the code (ruff)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## Type-check the packages (mypy)
	$(BIN)/mypy

audit: $(STAMP) ## Known vulnerabilities of the pinned packages (PyPI's advisory data; deploy/audit.py)
	$(BIN)/python deploy/audit.py

check: lint typecheck test ## Lint, type-check and test

clean: ## Remove the virtual environment and caches (not the model store)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Containers (docs/deploy.md, "Containers"): one Dockerfile (deploy/docker/Dockerfile) for both images.
# The build context is $(CONTEXT): the exported Bento (`make build`) and optional wheels.
CONTEXT ?= build/container
DOCKER ?= docker
IMAGE ?= kiln
BASE_IMAGE ?= python:3.11-slim-bookworm
GPU_BASE_IMAGE ?= nvidia/cuda:13.2.1-cudnn-runtime-ubuntu24.04
# requirements-serve.lock pins onnxruntime 1.32.0, which has no onnxruntime-gpu release:
# the newest onnxruntime-gpu, built for CUDA 13 and cuDNN 9 (hence GPU_BASE_IMAGE).
ORT_GPU_PACKAGE ?= onnxruntime-gpu==1.31.1
# A directory of wheels for the image's Python: pip then installs from it, without an index.
WHEELS ?=
DOCKER_BUILD_ARGS ?=

.PHONY: build containerize containerize-gpu containerize-train containerize-ray

build: $(STAMP) ## Build the Bento (service, pinned packages, production models) into build/container
	$(BIN)/python -m deploy.bento --output $(CONTEXT)/bento

# $(1): base image, $(2): the requirement replacing onnxruntime (empty: as locked), $(3): tag.
define container_image
	rm -rf $(CONTEXT)/wheels && mkdir -p $(CONTEXT)/wheels
	$(if $(WHEELS),cp -l $(WHEELS)/*.whl $(CONTEXT)/wheels/ 2>/dev/null || cp $(WHEELS)/*.whl $(CONTEXT)/wheels/)
	$(DOCKER) build --file deploy/docker/Dockerfile --tag $(IMAGE):$(3) \
	  --build-arg BASE_IMAGE=$(1) --build-arg ORT_PACKAGE=$(2) \
	  --build-arg BENTO_TAG="$$(cat $(CONTEXT)/bento.tag)" $(DOCKER_BUILD_ARGS) $(CONTEXT)
endef

containerize: build ## Build the CPU image kiln:cpu (BASE_IMAGE=, WHEELS=dir of wheels)
	$(call container_image,$(BASE_IMAGE),,cpu)

containerize-gpu: build ## Build the GPU image kiln:gpu (onnxruntime-gpu on GPU_BASE_IMAGE)
	$(call container_image,$(GPU_BASE_IMAGE),$(ORT_GPU_PACKAGE),gpu)

# The training image's context is the repository (.dockerignore); WHEELS=dir, wheels for
# the image's lock, go to $(TRAIN_WHEELS) in it, else pip uses its index.
TRAIN_WHEELS := build/train/wheels
# $(1): the lock file Dockerfile.train installs, $(2): the tag.
define train_image
	rm -rf $(TRAIN_WHEELS)
	$(if $(WHEELS),mkdir -p $(TRAIN_WHEELS) && { cp -l $(WHEELS)/*.whl $(TRAIN_WHEELS)/ 2>/dev/null || cp $(WHEELS)/*.whl $(TRAIN_WHEELS)/; })
	$(DOCKER) build --file deploy/docker/Dockerfile.train --tag $(2) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg LOCK=$(1) $(DOCKER_BUILD_ARGS) .
endef

containerize-train: ## Build the training image kiln-train:cpu for the retraining CronJob (BASE_IMAGE=, WHEELS=)
	$(call train_image,requirements-train.lock,$(IMAGE)-train:cpu)

# The same image with Ray (requirements-ray.lock) for `kiln predict --engine ray` on a Ray
# cluster; the training image stays without Ray. WHEELS=dir: wheels for requirements-ray.lock.
containerize-ray: ## Build the Ray scoring image kiln-ray:cpu (Dockerfile.train with requirements-ray.lock)
	$(call train_image,requirements-ray.lock,$(IMAGE)-ray:cpu)

# Serving benchmark with the peers (bench/peers/: one venv each under build/bench-venvs/).
.PHONY: bench bench-quick
bench: $(STAMP) ## Kiln against its peers and the limits, ~35 min; writes bench/RESULTS.md, fails below a target
	bench/peers/setup.sh
	$(BIN)/python bench/serving.py --check

soak: $(STAMP) ## 10 minutes of steady load on the served models: no errors, memory within 10% (bench/soak.py)
	@$(BIN)/python -c 'import sys; from kiln.store import list_models; sys.exit(0 if list_models()[0] else 1)' \
	  || { echo "the model store is empty: training the demo models first"; $(MAKE) --no-print-directory train; }
	$(BIN)/python bench/soak.py --serve --json bench/runs/soak-latest.json

bench-quick: $(STAMP) ## The same in under 3 minutes (2 s runs, concurrency 64): a smoke test, no report
	bench/peers/setup.sh
	$(BIN)/python bench/serving.py --quick