# The course's entry points. `make lab` and `make test` are the two commands in the README.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
FIRST_NOTEBOOK := chapter_tms/1_superposition_exercises.ipynb
SUBMISSIONS ?= submissions
OUT ?= grades

.PHONY: help setup lab test test-saelens lint notebooks site bench grade clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install everything (idempotent; quick when nothing changed)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so that pip never resolves it to a newer (multi-GB CUDA) release; on Linux without an
	# NVIDIA GPU, the CPU build from PyTorch's own index when it answers (utils/torch_index.py says why)
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet $$($(BIN)/python utils/torch_index.py) "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# make tests/, solutions/ and utils/ importable from any folder, e.g. a notebook's kernel
	$(BIN)/python -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'tms_sae_course.pth').write_text('$(CURDIR)\n')"
	touch $(STAMP)

# Jupyter refuses to start as root (containers, cloud VMs) unless told it may
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

lab: setup  ## open the course in JupyterLab at the first notebook
	$(BIN)/jupyter lab $(ALLOW_ROOT) $(FIRST_NOTEBOOK)

lint: setup  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint  ## run the whole test suite (lint, checkers, notebooks, science, grader)
	$(BIN)/python -m utils.notebooks --check
	# two test workers on two cores: each pinned to one thread, since threads fighting over a busy core are
	# many times slower (utils/training.py); notebook kernels inherit the setting
	OMP_NUM_THREADS=1 TQDM_DISABLE=1 $(BIN)/python -m pytest -n 2 --dist loadfile

# sae-lens pulls in transformer-lens and transformers (about 1.5 GB with torch), so it gets an environment of its own
SAELENS_VENV := .venv-saelens
SAELENS_VERSION := 6.54.12

test-saelens:  ## load every exported SAE architecture with the real sae-lens package (own environment, a few minutes)
	test -x $(SAELENS_VENV)/bin/python || $(PYTHON) -m venv $(SAELENS_VENV)
	$(SAELENS_VENV)/bin/python -c "import torch" 2>/dev/null || $(SAELENS_VENV)/bin/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(SAELENS_VENV)/bin/python -m pip install --quiet "sae-lens==$(SAELENS_VERSION)" pytest einops jaxtyping tqdm safetensors
	$(SAELENS_VENV)/bin/python -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'tms_sae_course.pth').write_text('$(CURDIR)\n')"
	$(SAELENS_VENV)/bin/python -m pytest -p no:cacheprovider -q tests/saelens

notebooks: setup  ## regenerate every notebook from its source
	$(BIN)/python -m utils.notebooks

site: setup  ## build the course's website into build/site/: every solutions notebook executed (about 10 min)
	$(BIN)/python -m pip install --quiet -r requirements-site.txt
	$(BIN)/python -m utils.website --out build/site

bench: setup  ## benchmark the training loop against a naive loop, and time every chapter's notebooks (about 10 min)
	$(BIN)/python -m utils.bench --chapters

grade: setup  ## grade a folder of submissions: make grade SUBMISSIONS=folder OUT=folder [SECTIONS=2.1,2.2] [EXERCISES=ids]
	$(BIN)/python -m utils.grade $(SUBMISSIONS) --out $(OUT) $(if $(SECTIONS),--sections $(SECTIONS)) \
		$(if $(EXERCISES),--exercises $(EXERCISES))

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
