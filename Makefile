# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when there is none.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that this project's machines carry; elsewhere: make TORCH_SPEC='torch' or your own pin.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# The third-party plugin packages: each installed with pip and tested with the project.
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

.PHONY: demo test benchmark clean

demo: $(VENV)/.installed
	$(BIN)/advisor profile examples/cnn_train.py --warmup 5 --steps 10 -- --steps 200

test: $(VENV)/.installed $(VENV)/.plugins
	$(BIN)/python -m pytest tests $(addsuffix /tests,$(PLUGINS))

benchmark: $(VENV)/.installed
	$(BIN)/python benchmarks/profile_overhead.py

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Plain (not editable) installs, as a user would make them; again when a plugin's files change.
$(VENV)/.plugins: $(VENV)/.installed $(wildcard plugins/*/pyproject.toml plugins/*/*/*.py)
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(PLUGINS)
	touch $@

clean:
	rm -rf $(VENV) .advisor
