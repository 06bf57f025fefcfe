"""MkDocs hook (mkdocs.yml: hooks): adds to every build the reproduction report, generated from results/*.csv, and
the committed figures of results/ (as results/<path>.png, so that a page shows them without a copy in docs/)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))
import gen_report  # noqa: E402


def on_files(files: Files, config) -> Files:
    # GRDA_REPORT_RESULTS: build the report from another results folder (to preview CSVs before committing them)
    generated = gen_report.build(Path(os.environ.get("GRDA_REPORT_RESULTS", gen_report.ROOT / "results")))
    for png in sorted(gen_report.ROOT.joinpath("results").rglob("*.png")):
        generated[png.relative_to(gen_report.ROOT).as_posix()] = png.read_bytes()
    for path, content in generated.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=content))
    return files


INCLUDE = re.compile(r"^(?P<indent>[ \t]*)<!-- include: (?P<path>[^#\s]+)(?:#(?P<section>[^>]*?))? -->$", re.MULTILINE)


def section_of(lines: list, title: str, path: str) -> list:
    """The body of the section headed ``title`` (up to the next heading of any level)."""
    starts = [i for i, line in enumerate(lines) if line.lstrip("#").strip() == title and line.startswith("#")]
    if not starts:
        raise ValueError(f"{path} has no section '{title}' (included by the docs)")
    end = next((j for j in range(starts[0] + 1, len(lines)) if lines[j].startswith("#")), len(lines))
    return lines[starts[0] + 1 : end]


def included(path: str, section: str, indent: str) -> str:
    """A committed Markdown file of the repository (e.g. a benchmark table), its title dropped and its headings two
    levels down, so that it sits inside the page that includes it; or one section of it, without its heading."""
    lines = (gen_report.ROOT / path).read_text(encoding="utf-8").split("\n")
    if section:
        lines = section_of(lines, section, path)
    elif lines and lines[0].startswith("# "):
        lines = lines[1:]
    lines = ["##" + line if line.startswith("#") else line for line in four_space_lists(lines)]
    return "\n".join(indent + line if line else "" for line in lines).strip("\n")


def four_space_lists(lines: list) -> list:
    """GitHub nests a list item two spaces in, Python-Markdown four: double the indentation outside code fences."""
    out, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        stripped = line.lstrip(" ")
        out.append(line if fenced or not stripped else " " * (2 * (len(line) - len(stripped))) + stripped)
    return out


def on_page_markdown(markdown: str, page, config, files) -> str:
    """``<!-- include: results/bench/optimizer_cpu.md -->`` or ``<!-- include: README.md#Section title -->`` on a
    line of its own: that file's text, or that section's, in place (so the site never holds a stale copy)."""
    return INCLUDE.sub(lambda m: included(m["path"], m["section"], m["indent"]), markdown)
