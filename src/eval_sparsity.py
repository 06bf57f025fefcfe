"""Per-layer sparsity of a checkpoint.

    python src/eval_sparsity.py runs/default/base/checkpoint.pth
    python src/eval_sparsity.py model_best.pth.tar --json

Accepts this harness's checkpoints ({'model': ...}), bare state_dicts, and the authors' ResNet-50
files ({'state_dict': ...} with 'module.' prefixes). Counts exact zeros over every floating-point
parameter tensor (BatchNorm running statistics excluded) and over conv/linear weights only.
Files are read with torch.load(weights_only=True): nothing in them is executed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # `python src/eval_sparsity.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.checkpoint import extract_state_dict, load_checkpoint
from src.errors import UserError
from src.sparse_export import describe_export, export_checkpoint
from src.sparsity import LayerSparsity, format_table, state_dict_sparsity, summarize


def checkpoint_layers(path: str) -> List[LayerSparsity]:
    """Per-layer counts of the checkpoint at ``path``; UserError for a bad file."""
    layers = state_dict_sparsity(extract_state_dict(load_checkpoint(path), path))
    if not layers:
        raise UserError(f"'{path}' holds no floating-point parameters to count")
    return layers


def checkpoint_sparsity(path: str) -> Dict[str, Any]:
    """Totals and per-layer counts of the checkpoint at ``path``, with the file's size."""
    out = summarize(checkpoint_layers(path))
    out["file"] = str(path)
    out["file_bytes"] = Path(path).stat().st_size
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .pth file: harness checkpoint, state_dict or {'state_dict': ...}")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument(
        "--export", metavar="OUT", default=None,
        help="also write the model weights to OUT as a compact sparse safetensors file (zeros not stored; "
        "read it back with src.sparse_export.load_sparse)",
    )
    args = parser.parse_args(argv)
    try:
        if args.json:
            out = checkpoint_sparsity(args.checkpoint)
            if args.export:
                out["export"] = export_checkpoint(args.checkpoint, args.export)
            print(json.dumps(out, indent=2))
        else:
            print(format_table(checkpoint_layers(args.checkpoint)))
            if args.export:
                print(describe_export(export_checkpoint(args.checkpoint, args.export)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
