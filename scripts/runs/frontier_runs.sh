#!/usr/bin/env bash
# Runs for the accuracy-vs-sparsity frontier on the offline digits default: SGD, gRDA at several mu,
# and gradual magnitude pruning (SGD + prune=gmp) at several target sparsities. Finished runs are skipped
# (the same command resumes or reports complete). Then: python scripts/figures/make_frontier.py --experiment default
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
run() { "$PY" src/train.py trainer.progress=false "$@" | tail -n 1; }
run optim=sgd
for mu in 0.51 0.6 0.7 0.8; do run optim=grda optim.mu=$mu; done
for s in 0.5 0.7 0.8 0.9 0.95; do run optim=sgd prune=gmp prune.final_sparsity=$s; done
