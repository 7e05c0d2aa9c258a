# Set-up and everyday commands; each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CELLS := src/openbms/cell/data
# The dashboard's HTTP port and the VISS WebSocket port: make run PORT=8001 VISS_PORT=8091 when these are taken.
PORT ?= 8000
VISS_PORT ?= 8090

.PHONY: run identify test bench cells clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[sim,test,bench,labfiles]'
	touch $@

## numba compiles each kernel on its first call and caches it beside the source: compiled here once
## (again after a source change), the BMS publishes its first SoC at once instead of after a minute.
$(VENV)/.compiled: $(VENV)/.installed $(shell find src/openbms -name '*.py')
	$(BIN)/python -m openbms.runtime.warm
	touch $@

## The main job on embedded defaults: the BMS live on a simulated blade pack behind the VISS v2
## interface and the dashboard (open the printed URL); 10x faster than real time.
run: $(VENV)/.compiled
	$(BIN)/openbms serve --speed 10 --port $(PORT) --viss-port $(VISS_PORT)

## Identify the A123 cell from the laboratory data, print its fit, plot it.
identify: $(VENV)/.installed
	$(BIN)/openbms identify --name a123_lfp --chemistry LFP -o out/a123_lfp.json

test: $(VENV)/.compiled
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/identify.py
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/interface_load.py
	$(BIN)/python bench/durability.py
	$(BIN)/python bench/fleet.py

## Regenerate the bundled cells from the A123 data (see README: Bundled cells).
cells: $(VENV)/.installed
	$(BIN)/openbms identify --name a123_lfp --chemistry LFP -o $(CELLS)/a123_lfp.json \
		--plot out/a123_lfp_fit.png
	$(BIN)/openbms derive-cell $(CELLS)/a123_lfp.json --capacity-ah 138 --name blade_lfp -o $(CELLS)/blade_lfp.json

clean:
	rm -rf $(VENV) out
