# Every target sets up .venv first if needed. Override the interpreter with PYTHON=python3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/cifar10
EPOCHS ?= 10

.PHONY: setup train test test-fast imagenet-table cifar-table cifar10-figure cifar10-runs tables clean-runs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

train: setup  ## the offline default: digits + MLP + gRDA
	$(PY) src/train.py

test: setup  ## the whole suite, slow end-to-end tests included
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

imagenet-table: setup  ## results/imagenet_table.{md,csv} from runs/imagenet_resnet50
	$(PY) scripts/make_tables.py imagenet

cifar-table: setup  ## results/cifar_table.{md,csv} from runs/cifar*_wrn28x10
	$(PY) scripts/make_tables.py cifar

cifar10-runs: setup  ## the Keras-CNN CIFAR-10 runs (EPOCHS=10 DATA=...)
	scripts/keras_cifar10_runs.sh $(EPOCHS) $(DATA)

cifar10-figure: setup  ## results/figures/cifar10_keras_cnn_*.png + results/cifar10_keras_cnn.md
	$(PY) scripts/make_cifar10_figure.py

tables: imagenet-table cifar-table cifar10-figure
