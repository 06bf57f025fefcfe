#!/usr/bin/env bash
# The authors' Keras-CNN CIFAR-10 comparison (their multi-optimizer figure), one run after another.
# Usage: scripts/keras_cifar10_runs.sh [EPOCHS] [DATA_ROOT] [PARALLEL]
#   EPOCHS    epochs per run (the authors ran 100; default 10)
#   DATA_ROOT CIFAR-10 image folder or torchvision root (default ../shared/data/cifar10)
#   PARALLEL  runs at once, each with 2/PARALLEL threads on a 2-core machine (default 1)
# Each run resumes if its directory already holds a checkpoint. Then: make cifar10-figure
set -euo pipefail
EPOCHS=${1:-10}
ROOT=${2:-../shared/data/cifar10}
PARALLEL=${3:-1}
PY=${PYTHON:-.venv/bin/python}
THREADS=$(( $(nproc) / PARALLEL )); (( THREADS >= 1 )) || THREADS=1
# optimizer overrides, in the order of the authors' legend
RUNS=(
  "optim=sgd"
  "optim=grda optim.mu=0.51"
  "optim=grda optim.mu=0.7"
  "optim=grda optim.mu=1.0"
  "optim=grda optim.mu=0.3"
  "optim=sgd_momentum"
  "optim=adagrad"
  "optim=adam optim.lr=0.001"
)
ONLY=${ONLY:-${#RUNS[@]}}
printf '%s\n' "${RUNS[@]:0:$ONLY}" | xargs -P "$PARALLEL" -I{} sh -c \
  "$PY src/train.py experiment=cifar10_keras_cnn data.root=$ROOT trainer.epochs=$EPOCHS trainer.threads=$THREADS trainer.progress=false {}"
