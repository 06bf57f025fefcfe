"""Griffe extension (mkdocs.yml): the reStructuredText bits of grda's docstrings, as Markdown for mkdocstrings.

The docstrings are Google style with a few Sphinx roles, which Markdown would show as typed: ``:math:`x```,
``.. math::`` blocks, ``:class:`X```/``:func:`X```, and literal blocks after ``::``. Math becomes MathML (rendered
by the browser itself: no script, nothing fetched), a role a code span, ``text::`` plain ``text:``.
"""

from __future__ import annotations

import re

import griffe
from latex2mathml.converter import convert

ROLE = re.compile(r":(?:class|func|meth|attr|mod|obj):`~?([^`]+)`")
INLINE_MATH = re.compile(r":math:`([^`]+)`")
LITERAL = re.compile(r"(\S)::$", re.MULTILINE)


def mathml(tex: str, display: str = "inline") -> str:
    try:
        return convert(tex, display=display).replace("\n", "")
    except Exception:  # noqa: BLE001 - a formula latex2mathml cannot read stays readable as TeX
        return f"`{tex}`"


def math_blocks(text: str) -> str:
    """``.. math::`` and its indented lines -> one display formula per line (alignment marks dropped)."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        if lines[i].strip() != ".. math::":
            out.append(lines[i])
            i += 1
            continue
        i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
            body.append(lines[i].strip())
            i += 1
        rows = [r.replace("&", "").strip() for r in " ".join(body).split(r"\\") if r.strip()]
        out += ['<div class="math">' + "".join(mathml(r, "block") for r in rows) + "</div>", ""]
    return "\n".join(out)


def to_markdown(text: str) -> str:
    text = math_blocks(text)
    # in a span: a line that starts with <math> would otherwise open an HTML block of its own
    text = INLINE_MATH.sub(lambda m: f"<span>{mathml(m.group(1))}</span>", text)
    text = ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    return LITERAL.sub(r"\1:", text)


class RstToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
