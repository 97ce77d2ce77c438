"""report.md: the view model (``view.build_view``) through ``templates/report.md.j2``.

Every value the template prints goes through ``md()``: HTML-escaped where it could open a tag (a
Markdown viewer renders raw HTML) and with Markdown's active characters backslash-escaped, pipes
included, so a label can neither break a table nor inject markup.
"""

from __future__ import annotations

import re
from typing import Any

from . import _fmt as F
from .templating import environment
from .view import build_view

_MD_ACTIVE = re.compile(r"([\\`*\[\]|#~])")
_FIXED_ACTIVE = re.compile(r"([\\`*|#~])")          # Fixed text: brackets are only ever intervals
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")        # what could start a tag, comment or autolink
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")       # what could form a character reference
_BLANK_RUNS = re.compile(r"\n{3,}")


def md(v: Any) -> str:
    """A value made safe for Markdown: one line, inert, table-safe, still readable.

    ``<`` that could open a tag/comment/autolink and ``&`` that could form an entity become
    ``&lt;``/``&amp;`` (every Markdown flavour honours those, unlike ``\\<``); "a <= b" and
    "Tom & Jerry" stay as they are. Markdown's active characters, pipes included, are
    backslash-escaped; an underscore inside a word (person_00) is inert and left alone. Text the
    report composed itself (``Fixed``) keeps its brackets: they are intervals, never links.
    """
    active = _FIXED_ACTIVE if isinstance(v, F.Fixed) else _MD_ACTIVE
    s = _ENTITY.sub("&amp;", F.text(v))
    s = _TAG_OPEN.sub("&lt;", s)
    s = active.sub(r"\\\1", s)
    s = _UNDERSCORE.sub(r"\\_", s)
    # a line that starts with these is a quote, list or heading underline; the view only starts
    # lines with its own words, so only data needs this
    if not isinstance(v, F.Fixed) and s.startswith((">", "+", "-", "=")):
        return "\\" + s
    return s


def render_markdown(result) -> str:
    """The text of report.md for an audit, compare or sweep report (typed, or report.json's dict; deterministic)."""
    text = environment("md", md).get_template("report.md.j2").render(view=build_view(result))
    lines = [line.rstrip() for line in text.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"
