# The two commands (README): `make demo` runs the main job on the cpu preset, `make test` runs the tests.
# Each creates or reuses the virtual environment .venv and installs what it needs.
#   TORCH_SPEC  torch requirement installed first (default: the CPU wheel torch==2.13.0; GPU users pass their own,
#               e.g. make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128")
#   PRESET      preset of `make demo` (default cpu: the science on 2 CPU cores; tiny: the GPT-2 pipeline walkthrough)
#   GENPRUNE_DATA_DIR  where the data catalog looks for external data (default: ../shared/data/external if present;
#               missing data sets are downloaded on first use into its first writable entry or data/external)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev
PRESET ?= cpu
# the checkout's sibling shared/ folder if present; datasets missing from it are downloaded into data/external
GENPRUNE_DATA_DIR ?= $(wildcard $(abspath $(CURDIR)/../shared/data/external))
export GENPRUNE_DATA_DIR

comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
TEST_EXTRAS := $(EXTRAS),lmeval
TEST_STAMP := $(VENV)/.installed-$(subst $(comma),-,$(TEST_EXTRAS))

# create or reuse the venv; torch first (TORCH_SPEC), then the package with the extras $(1): nothing pulls another torch
define install
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet $(TORCH_SPEC)
	$(VENV)/bin/python -m pip install --quiet -e ".[$(1)]"
	touch $@
endef

.PHONY: demo test bench venv clean
venv: $(STAMP)

$(STAMP): pyproject.toml
	$(call install,$(EXTRAS))

$(TEST_STAMP): pyproject.toml
	$(call install,$(TEST_EXTRAS))

demo: venv
	$(VENV)/bin/genprune reproduce --preset $(PRESET)

# the tests install the lmeval extra too (tests/test_lmeval_adapter.py)
test: $(TEST_STAMP)
	$(VENV)/bin/python -m pytest -q

bench: venv
	$(VENV)/bin/python bench/train_throughput.py --preset $(PRESET)

clean:
	rm -rf $(VENV) runs
