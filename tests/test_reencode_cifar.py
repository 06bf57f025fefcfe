"""scripts/analysis/reencode_cifar.py: an image-folder copy re-encoded at another JPEG quality."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("reencode_cifar", ROOT / "scripts" / "analysis" / "reencode_cifar.py")
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)


def noisy_image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_copy_keeps_the_tree_and_compresses_more(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i, rel in enumerate(("train/cat/0.jpg", "train/dog/1.jpg", "test/cat/2.png")):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        noisy_image(i).save(src / rel, **({"quality": 75} if rel.endswith(".jpg") else {}))
    assert rc.main([str(src), str(dst), "--quality", "20"]) == 0
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.jpg")) == [
        "test/cat/2.jpg",
        "train/cat/0.jpg",
        "train/dog/1.jpg",
    ]
    with Image.open(dst / "train/cat/0.jpg") as low, Image.open(src / "train/cat/0.jpg") as q75:
        assert low.size == (32, 32) and low.mode == "RGB"
        # coarser quantisation: every luminance table entry at quality 20 is at least quality 75's, most larger
        ours, theirs = np.array(low.quantization[0]), np.array(q75.quantization[0])
        assert (ours >= theirs).all() and (ours > theirs).mean() > 0.9
    assert rc.reencode(src, dst, 20) == 0, "existing files are left alone: an interrupted copy resumes"
    assert not list(dst.rglob("*.part"))


def test_the_source_is_never_overwritten(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    noisy_image(0).save(tmp_path / "train" / "cat" / "0.jpg", quality=75)
    before = (tmp_path / "train" / "cat" / "0.jpg").read_bytes()
    with pytest.raises(SystemExit, match="DST is SRC"):
        rc.main([str(tmp_path), str(tmp_path / "." / "train" / ".."), "--quality", "20"])
    assert (tmp_path / "train" / "cat" / "0.jpg").read_bytes() == before


@pytest.mark.parametrize("args, message", [(["--quality", "0"], "outside 1-95"), ([], "is not a folder")])
def test_bad_arguments_are_one_line_errors(tmp_path, args, message, capsys):
    with pytest.raises(SystemExit) as e:
        rc.main([str(tmp_path / "missing"), str(tmp_path / "out"), *args])
    assert message in str(e.value)
