# Every target sets up .venv first if needed. Override the interpreter with PYTHON=python3.11.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/cifar10
EPOCHS ?= 100
# Where the long Keras-CNN runs live: outside the work tree, so a fresh clone or the next session resumes them
RUNS ?= $(HOME)/grda-runs
PARALLEL ?= 2
STEP ?= 5
SEED_EPOCHS ?= 30
VGG_EPOCHS ?= 20
VGG_STEP ?= 2
VGG_ONLY ?=  # e.g. sgd: one of the three runs only (a session that carries one run)
WRN_EPOCHS ?= 10

.PHONY: setup setup-dev docs lint train test test-fast test-keras-tf imagenet-table cifar-table cifar10-figure cifar10-runs cifar10-seeds cifar10-curves authors-curves seeds cifar-figure cifar10-vgg16-runs cifar10-vgg16-curves cifar10-wrn-runs cifar10-wrn-curves early-sparsity bench-sparse tables bench bench-cuda frontier search-c norms connect cifar10-connect export-example examples keras-cifar10

# what training needs: the grda package and the harness
$(VENV)/.installed: pyproject.toml src/optim/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./src/optim
	$(PY) -m pip install --quiet -e .
	touch $@

setup: $(VENV)/.installed

# what the tests, benchmarks and Keras examples add: pytest, the integrations, onnxruntime, Keras, JAX, the docs tools
DEV := $(VENV)/.dev-installed
$(DEV): $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,keras,jax,docs]"
	touch $@

setup-dev: $(DEV)

# the docs extra (mkdocs & co.), installed on demand by make docs and make test only, not by make train
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed  ## the documentation site -> site/ (its report generated from results/*.csv)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

train: setup  ## the offline default: digits + MLP + gRDA
	$(PY) src/train.py

# grda.keras on the TensorFlow backend in an environment without torch: ./src/optim[keras] must bring none
VENV_TF := .venv-tf
TENSORFLOW ?= tensorflow-cpu==2.21.*
NO_TORCH := import importlib.util as u, sys; u.find_spec("torch") and sys.exit("error: torch got installed")
$(VENV_TF)/.installed: src/optim/pyproject.toml
	rm -rf $(VENV_TF)
	$(PYTHON) -m venv $(VENV_TF)
	$(VENV_TF)/bin/python -m pip install --quiet -e "./src/optim[keras]" "$(TENSORFLOW)" "pytest>=7,<9" pytest-timeout pillow
	$(VENV_TF)/bin/python -c '$(NO_TORCH)'
	touch $@

test-keras-tf: $(VENV_TF)/.installed  ## tests/test_grda_keras.py on TensorFlow without torch (make test runs it)
	KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 $(VENV_TF)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test_grda_keras.py

lint: $(DEV)  ## ruff: the checks and the formatting (pyproject.toml [tool.ruff]); make test runs it first
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(DEV) lint test-keras-tf  ## the whole suite, slow end-to-end tests included (two workers)
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

test-fast: $(DEV)  ## unit and in-process tests only (no training subprocesses): the quick loop while editing
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow"

imagenet-table: setup  ## results/imagenet_table.{md,csv} from runs/imagenet_resnet50
	$(PY) scripts/figures/make_tables.py imagenet

cifar-table: setup  ## results/cifar_table.{md,csv} from runs/cifar*_wrn28x10
	$(PY) scripts/figures/make_tables.py cifar

cifar-figure: setup  ## ours on the authors' per-epoch curves: WRN runs in runs/, VGG16 and the first WRN epochs from the committed CSVs -> results/figures/ (and VGG16's gRDA-vs-SGD lag, its test accuracy at a given train loss, its runs on two machines)
	$(PY) scripts/figures/make_wrn_figure.py
	$(PY) scripts/figures/make_band_figure.py --model vgg16
	$(PY) scripts/analysis/lag_behind_sgd.py
	$(PY) scripts/analysis/acc_given_loss.py
	$(PY) scripts/analysis/compare_machines.py --before results/cifar10_vgg16_first_machine_curves.csv
	if [ -f results/cifar10_wrn28x10_curves.csv ]; then $(PY) scripts/figures/make_band_figure.py --model wrn28x10; fi

cifar10-vgg16-runs: setup  ## the authors' VGG16 runs (SGD, gRDA mu 0.51 / 0.7): first VGG_EPOCHS of 600 epochs; rerun to resume (VGG_ONLY)
	$(PY) scripts/runs/cifar10_runs.py run --setting vgg16 --epochs $(VGG_EPOCHS) --runs-dir $(RUNS) --data-root $(DATA) --parallel 1 --step $(VGG_STEP) $(if $(strip $(VGG_ONLY)),--only $(VGG_ONLY))

cifar10-vgg16-curves: setup  ## results/cifar10_vgg16_curves.csv from the VGG16 runs in RUNS (every finished epoch)
	$(PY) scripts/runs/cifar10_runs.py collect --setting vgg16 --runs-dir $(RUNS)

cifar10-wrn-runs: setup  ## WRN-28-10 on CIFAR-10, SGD and gRDA mu 0.501: first WRN_EPOCHS of 200 epochs (a GPU job); rerun to resume
	$(PY) scripts/runs/cifar10_runs.py run --setting wrn --epochs $(WRN_EPOCHS) --runs-dir $(RUNS) --data-root $(DATA) --parallel 1 --step 1

cifar10-wrn-curves: setup  ## results/cifar10_wrn28x10_curves.csv from the WRN-28-10 runs in RUNS (every finished epoch)
	$(PY) scripts/runs/cifar10_runs.py collect --setting wrn --runs-dir $(RUNS)

cifar10-runs: setup  ## the authors' Keras-CNN figure: 8 optimizers + 4 gRDA (weights start); rerun to resume (EPOCHS RUNS DATA PARALLEL STEP)
	$(PY) scripts/runs/cifar10_runs.py run --setting all --epochs $(EPOCHS) --runs-dir $(RUNS) --data-root $(DATA) --parallel $(PARALLEL) --step $(STEP)

cifar10-seeds: setup  ## more seeds of SGD and Adam for the Keras-CNN figure (their run-to-run spread); rerun to resume (SEED_EPOCHS RUNS DATA)
	$(PY) scripts/runs/cifar10_runs.py run --setting seeds --epochs $(SEED_EPOCHS) --runs-dir $(RUNS) --data-root $(DATA) --parallel $(PARALLEL) --step $(STEP)

cifar10-curves: setup  ## results/cifar10_keras_cnn_curves.csv from the runs in RUNS (every finished epoch)
	$(PY) scripts/runs/cifar10_runs.py collect --runs-dir $(RUNS)

authors-curves: setup  ## results/authors_keras_cnn_curves.csv: the authors' two PNGs in ../shared/reference, digitised
	$(PY) scripts/authors/digitize_authors_figure.py

REPO ?= $(GRDA_AUTHORS_REPO)
.PHONY: authors-logs
authors-logs: setup  ## results/authors_{wrn,vgg16}_curves.*, authors_early_repeats.csv, authors_band_strictness.* from the authors' logs in REPO
	$(PY) scripts/authors/authors_wrn_curves.py $(if $(REPO),--repo $(REPO))
	$(PY) scripts/authors/band_strictness.py $(if $(REPO),--repo $(REPO))

cifar10-figure: setup  ## ours vs the authors' curves (committed CSVs only) -> results/figures/cifar10_keras_cnn_*.png, results/cifar10_keras_cnn_table.md
	$(PY) scripts/figures/make_cifar10_figure.py

seeds: setup  ## the offline default over 8 seeds (gRDA and SGD) -> results/seeds_default.{csv,md}
	$(PY) scripts/runs/seed_spread.py --experiment default --seeds 0-7

early-sparsity: setup  ## the no-training check of every gRDA preset's early sparsity
	for e in cifar10_wrn28x10 cifar100_wrn28x10 cifar10_vgg16 imagenet_resnet50 mnist_lenet5 cifar10_keras_cnn; do $(PY) scripts/analysis/early_sparsity.py --experiment $$e; done

tables: imagenet-table cifar-table cifar10-figure

bench: $(DEV)  ## optimizer step time and training throughput tables in results/bench/
	$(PY) scripts/bench/bench_optimizer.py --repeats 30 --out results/bench/optimizer_cpu.md
	MALLOC_MMAP_THRESHOLD_=131072 $(PY) scripts/bench/bench_optimizer.py --models resnet50 --repeats 10 --out results/bench/optimizer_cpu_malloc_mmap.md
	$(PY) scripts/bench/bench_train.py --setup keras_cnn --data-root $(DATA) --batch-size 10 --steps 800 --rounds 5 --chunk 20 --out results/bench/train_keras_cnn_b10.md
	$(PY) scripts/bench/bench_train.py --setup keras_cnn --data-root $(DATA) --batch-size 128 --steps 120 --rounds 3 --chunk 20 --out results/bench/train_keras_cnn_b128.md
	$(PY) scripts/bench/bench_train.py --setup resnet50 --batch-size 8 --steps 12 --chunk 3 --out results/bench/train_resnet50_b8.md

bench-sparse: $(DEV)  ## CPU inference, dense PyTorch vs src/sparse_runtime -> results/bench/sparse_inference_cpu.md (~45 min; idle machine)
	$(PY) scripts/bench/bench_sparse_inference.py --keras-ckpt $(RUNS)/cifar10_keras_cnn/figure/grda_mu1.0/checkpoint.pth \
		--keras-ckpt $(RUNS)/cifar10_keras_cnn/figure/grda_mu0.7/checkpoint.pth --out results/bench/sparse_inference_cpu.md

bench-cuda: $(DEV)  ## optimizer step time on a CUDA GPU -> results/bench/optimizer_cuda.md
	$(PY) scripts/bench/bench_optimizer.py --device cuda --repeats 100 --out results/bench/optimizer_cuda.md

frontier: setup  ## digits runs (gRDA at several mu, GMP at several sparsities) -> results/frontier_default.*
	scripts/runs/frontier_runs.sh
	$(PY) scripts/figures/make_frontier.py --experiment default

search-c: setup  ## largest c within 1 point of SGD on digits, mu 0.51 -> results/search_c/
	$(PY) scripts/runs/search_c.py --experiment default --mu 0.51 --c-min 1e-3 --c-max 0.1 --num 6 --epochs 5

norms: setup  ## the paper's Figure 2 on the digits runs of `make frontier`
	$(PY) scripts/figures/plot_norms.py runs/default/optim=sgd runs/default/optim.mu=0.51,optim=grda runs/default/optim.mu=0.7,optim=grda --out results/figures/norm_ratio_default.png

GRDA07 := runs/default/optim.mu=0.7,optim=grda

connect: setup  ## the paper's Figure 1 on digits: SGD vs gRDA (mu 0.7) -> results/connect_default/
	$(PY) scripts/analysis/connect.py "runs/default/optim=sgd/checkpoint.pth" "$(GRDA07)/checkpoint.pth" --points 61 --curve-epochs 5 --out results/connect_default

KERAS_RUNS = $(RUNS)/cifar10_keras_cnn/figure
CONNECT_MUS ?= 0.51 0.7

cifar10-connect: setup  ## Figure 1's question on the Keras CNN: SGD vs gRDA (CONNECT_MUS) at the runs' last epoch -> results/connect_keras_cnn/
	for mu in $(CONNECT_MUS); do \
	  $(PY) scripts/analysis/connect.py "$(KERAS_RUNS)/sgd/checkpoint.pth" "$(KERAS_RUNS)/grda_mu$$mu/checkpoint.pth" \
	    --lr 0.005 --points 21 --curve-epochs 5 --data-root $(DATA) --threads 2 --out results/connect_keras_cnn/mu$$mu || exit 1; \
	done

export-example: setup  ## compact sparse export of the digits gRDA checkpoint -> results/sparse_export_default.txt
	$(PY) src/eval_sparsity.py "$(GRDA07)/checkpoint.pth" --export "$(GRDA07)/model.sparse.safetensors" > results/sparse_export_default.txt

examples: frontier norms search-c connect export-example  ## every digits example result in results/

keras-cifar10: $(DEV)  ## the Keras 3 optimizer on the Keras CNN (torch backend), 2 epochs on a subset
	$(PY) scripts/analysis/keras_cifar10_cnn.py --data-root $(DATA) --epochs 2 --train-subset 10000 --test-subset 2000 --mu 0.51 --out results/keras_cifar10_cnn_grda.csv
