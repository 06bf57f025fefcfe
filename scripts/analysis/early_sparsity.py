#!/usr/bin/env python
"""Predict gRDA's early sparsity from a preset without training: the command line of src/early_sparsity.py (the
static model, its accuracy against the authors' logs and the options are documented there).

    python scripts/analysis/early_sparsity.py --experiment cifar100_wrn28x10 [--epochs 1,2,3,5,10] [--per-layer]
                                              [override ...]          # any Hydra override, e.g. optim.mu=0.55
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from src.early_sparsity import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
