#!/usr/bin/env python
"""A copy of an image-folder CIFAR (split/class/*.jpg) re-encoded as JPEG at another quality: to measure how much a
result depends on the lossy copy it was trained on.

    python scripts/analysis/reencode_cifar.py SRC DST [--quality 40]

Our CIFAR-10 is a JPEG copy (IJG quality 75, 4:2:0 chroma), the authors' runs read torchvision's lossless arrays;
the lossless images cannot be had here. What can be measured is the effect of compressing further: a result that
moves when the data go from quality 75 to quality 40 may move between lossless and 75 as well; one that stays put
is unlikely to. Every image is decoded and saved again with PIL at --quality with 4:2:0 chroma subsampling, under
the same relative path in DST (train with `data.root=DST`). Existing files in DST are left alone, so an interrupted
copy resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from PIL import Image


def reencode(src: Path, dst: Path, quality: int) -> int:
    """Re-encode every *.jpg / *.png under src into dst; the number of images written."""
    written = 0
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        out = (dst / path.relative_to(src)).with_suffix(".jpg")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")  # renamed once whole: a file cut short is never taken as done
        with Image.open(path) as im:
            im.convert("RGB").save(partial, "JPEG", quality=quality, subsampling="4:2:0")
        partial.replace(out)
        written += 1
    return written


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="the image folder to copy (e.g. ../shared/data/cifar10)")
    ap.add_argument("dst", type=Path, help="where the copy goes (outside the repository)")
    ap.add_argument("--quality", type=int, default=40, help="JPEG quality, 1-95 (default 40)")
    args = ap.parse_args(argv)
    if not 1 <= args.quality <= 95:
        sys.exit(f"error: --quality {args.quality} is outside 1-95 (PIL's useful range)")
    if not args.src.is_dir():
        sys.exit(f"error: '{args.src}' is not a folder; give the CIFAR image folder (split/class/*.jpg)")
    if args.dst.resolve() == args.src.resolve():
        sys.exit("error: DST is SRC; give another folder, the source is never overwritten")
    written = reencode(args.src, args.dst, args.quality)
    print(f"wrote {written} images at quality {args.quality} to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
