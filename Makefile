# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when there is none.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that this project's machines carry; elsewhere: make TORCH_SPEC='torch' or your own pin.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# The third-party plugin packages: each installed with pip and tested with the project.
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

.PHONY: demo test benchmark trace-scale reports clean

demo: $(VENV)/.installed
	$(BIN)/advisor profile examples/cnn_train.py --warmup 5 --steps 10 -- --steps 200

# The tests in two parts: first those whose assertions hold on a busy machine, TEST_WORKERS at a time (pytest-xdist,
# one test file per worker), then those that time something (marker `timing`), alone; it fails if either part fails.
TEST_WORKERS ?= 2
TEST_PATHS := tests $(addsuffix /tests,$(PLUGINS))
test: $(VENV)/.installed $(VENV)/.plugins
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not timing" --durations=10 -rs $(TEST_PATHS); \
	first=$$?; \
	$(BIN)/python -m pytest -m timing --durations=10 -rs $(TEST_PATHS) && test $$first -eq 0

benchmark: $(VENV)/.installed
	$(BIN)/python benchmarks/profile_overhead.py

# advisor analyze against json.load + pandas and Holistic Trace Analysis (its own benchmarks/.venv-hta) on 0.1-1 GB
trace-scale: $(VENV)/.installed
	$(BIN)/python benchmarks/trace_scale.py

# The sample reports in reports/, made from the bundled examples (runs kept in .advisor/sample-runs/).
SAMPLE_RUNS := .advisor/sample-runs
reports: $(VENV)/.installed
	rm -rf $(SAMPLE_RUNS)
	$(BIN)/advisor profile --out $(SAMPLE_RUNS)/cnn_train --warmup 3 --steps 5 examples/cnn_train.py -- --steps 60
	$(BIN)/advisor report $(SAMPLE_RUNS)/cnn_train -o reports/cnn_train/report.md
	$(BIN)/advisor profile --out $(SAMPLE_RUNS)/transformer_train --warmup 3 --steps 5 examples/transformer_train.py -- --steps 60
	$(BIN)/advisor report $(SAMPLE_RUNS)/transformer_train -o reports/transformer_train/report.md
	$(BIN)/advisor profile --out $(SAMPLE_RUNS)/input_bound_0_workers --no-measure examples/input_bound_train.py -- --num-workers 0
	$(BIN)/advisor profile --out $(SAMPLE_RUNS)/input_bound_2_workers --no-measure examples/input_bound_train.py -- --num-workers 2
	$(BIN)/advisor report --compare $(SAMPLE_RUNS)/input_bound_0_workers $(SAMPLE_RUNS)/input_bound_2_workers \
		-o reports/input_bound_workers/comparison.md

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# advisor's bytecode, as an installed package has it: where PYTHONDONTWRITEBYTECODE is set (this project's
	# machines set it), every advisor process (the command and the script's child) would compile it again
	$(BIN)/python -m compileall -q advisor
	touch $@

# Plain (not editable) installs, as a user would make them; again when a plugin's files change.
$(VENV)/.plugins: $(VENV)/.installed $(wildcard plugins/*/pyproject.toml plugins/*/*/*.py)
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall $(PLUGINS)
	touch $@

clean:
	rm -rf $(VENV) .advisor
