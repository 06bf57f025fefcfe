"""The ```python snippets of README.md and docs/, and what runs them (tests/test_snippets.py).

A snippet runs as written, statement by statement, in a fresh process. Where it uses a name it never defines that
stands for the reader's own things (``model``, ``loader``, ``loss_fn``, ``ds``, ``x``, ``y``), a tiny stand-in is
made just before the statement that first needs it, after the snippet's own imports (so a Keras snippet has chosen
its backend before the stand-in Keras model is built). Any other undefined name is a NameError, as for a reader
who pastes the snippet. Blocks in other languages (bash, text) are not run: mark a fragment that is not meant to
run by its language.

    python -m tests.snippets README.md 42      # run the snippet whose fence opens on line 42 (from the repo root)
    python -m tests.snippets README.md 42 CODE_FILE   # run CODE_FILE as that snippet
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*$")


@dataclass(frozen=True)
class Snippet:
    path: str  # relative to the repository root
    line: int  # the opening fence's line, 1-based
    code: str

    @property
    def label(self) -> str:
        return f"{self.path}:{self.line}"


def extract(path: Path, lang: str = "python") -> List[Snippet]:
    """Every fenced block of ``lang`` in a Markdown file, dedented (fences may sit inside tabs or lists)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, start = m["indent"], i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if m["lang"] == lang:
            found.append(Snippet(str(path.resolve().relative_to(ROOT)), start + 1, "\n".join(body) + "\n"))
    return found


def markdown_files() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def all_snippets() -> List[Snippet]:
    return [s for path in markdown_files() for s in extract(path)]


def imported_modules(code: str) -> List[str]:
    """Top-level packages the snippet imports (to skip it where one is not installed)."""
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module.split(".")[0])
    return sorted(set(names))


# ------------------------------------------------------------------ stand-ins for the reader's own objects


def flavour(code: str) -> str:
    if "grda.keras" in code or re.search(r"^\s*import keras", code, re.MULTILINE):
        return "keras"
    if "transformers" in code:
        return "hf"
    return "torch"


def _torch_model(kind: str):
    import torch

    torch.manual_seed(0)
    if "fully_shard" in kind:  # a one-process group, as torchrun would have set up
        import torch.distributed as dist

        if not dist.is_initialized():
            init = Path(tempfile.mkdtemp()) / "init"
            dist.init_process_group("gloo", init_method=f"file://{init}", rank=0, world_size=1)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _hf_model():
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def _hf_dataset():
    import torch

    ids = torch.randint(1, 64, (32, 12), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": int(row[0] % 2)} for row in ids]


def _keras_model():
    import keras

    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])


def _data(n: int = 64):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype("float32")
    return x, (x[:, :3].argmax(axis=1)).astype("int64")


def _loader():
    import torch

    x, y = _data()
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16
    )


def _batch(i: int, kind: str):
    x, y = _data()
    if kind == "keras":
        return (x, y)[i]
    import torch

    return torch.from_numpy((x, y)[i][:16])


def stand_ins(code: str) -> Dict[str, Callable[[], object]]:
    kind = flavour(code)
    model = {"keras": _keras_model, "hf": _hf_model}.get(kind, lambda: _torch_model(code))
    return {
        "model": model,
        "loader": _loader,
        "loss_fn": lambda: __import__("torch").nn.CrossEntropyLoss(),
        "ds": _hf_dataset,
        "x": lambda: _batch(0, kind),
        "y": lambda: _batch(1, kind),
    }


# ------------------------------------------------------------------ running one snippet


def loaded_names(node: ast.AST) -> List[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


def run(snippet: Snippet) -> dict:
    """Execute ``snippet`` statement by statement in a fresh namespace; returns the namespace."""
    tree = ast.parse(snippet.code, filename=snippet.path)
    ast.increment_lineno(tree, snippet.line)  # tracebacks name the Markdown file's own lines
    makers = stand_ins(snippet.code)
    namespace: dict = {"__name__": "__main__"}
    for statement in tree.body:
        for name in loaded_names(statement):
            if name in makers and name not in namespace and not hasattr(builtins, name):
                namespace[name] = makers[name]()
        code = compile(ast.Module(body=[statement], type_ignores=[]), snippet.path, "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own code, which is what is under test
    return namespace


def find(path: str, line: int) -> Snippet:
    for snippet in extract(ROOT / path):
        if snippet.line == line:
            return snippet
    raise SystemExit(f"no ```python block opens on {path}:{line}")


def main(argv: List[str]) -> int:
    """``PATH LINE``: the snippet whose fence opens there; ``PATH LINE CODE_FILE``: that snippet's code as given (the
    test passes the code it collected, so an edit to the Markdown file meanwhile cannot mix them up)."""
    snippet = (
        find(argv[0], int(argv[1]))
        if len(argv) == 2
        else Snippet(argv[0], int(argv[1]), Path(argv[2]).read_text(encoding="utf-8"))
    )
    os.environ.setdefault("MPLBACKEND", "Agg")
    run(snippet)
    print(f"ran {snippet.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
