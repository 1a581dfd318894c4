# Two commands do all set-up on a fresh machine: `make demo` and `make test` (`make test-all`: the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nasnet-zoo-installed
# torch first, pinned to the release this project is tested with; then the project with its extras.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# dev pulls demo (detection, viz, onnx, scikit-learn), tensorboard and ray: everything make test and make demo use.
EXTRAS ?= dev
PYTEST_ARGS ?=
# pytest-xdist workers: one per core; --dist loadfile keeps each module's fixtures on one worker (built once).
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --dist loadfile

.PHONY: install test test-all demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

# The quick suite: every test but the long process tests marked `slow` (kills and resumes, DDP, Ray, locks,
# the wheel, training on real digits). `make test-all` runs those too; CI (.ci/run) runs test-all.
test: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/demo.py

bench: $(STAMP)
	$(PY) bench/backbone.py
	$(PY) bench/onnx_speed.py
	$(PY) bench/detector.py
	$(PY) bench/search.py

clean:
	rm -rf $(VENV) runs build *.egg-info
