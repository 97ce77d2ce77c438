"""Report layer: the JSON-able result dict -> report.json, report.md, report.html, stdout summary.

One view model (``view.build_view``: the typed report -> sections, tables, badges, figures) feeds both
Jinja2 templates (``templates/report.md.j2``, ``templates/report.html.j2``). Renderers read only the
typed report that ``result.load_report`` makes of the result dict, once, at the entry (``render_reports``,
``summary_text``, ``build_view``, the card; see docs/INTERFACES.md): a dict that breaks the schema is
rejected with its ``ValueError``. They never touch arrays, models or images, and the same dict always
gives byte-identical files.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import jsonio
from ._fmt import typed_report
from .html import render_html
from .jsonio import to_jsonable
from .markdown import render_markdown
from .summary import summary_text as _summary_text

__all__ = ["write_reports", "render_reports", "summary_text", "render_markdown", "render_html", "to_jsonable",
           "typed_report"]

REPORT_FILES = ("report.json", "report.md", "report.html")


def render_reports(result: dict, typed=None) -> dict[str, str]:
    """The texts of report.json, report.md and report.html (file name -> text, in that order).

    NaN and infinities become null. The JSON-clean dict is read into the typed report once
    (``result.load_report``), and both renderers read that; a dict that breaks the schema raises its
    ``ValueError`` (naming the place) before any text is made. ``typed``: that typed report, when the
    caller has already read it (the CLI reads it once per run), so it is not read again; report.json is
    written from the dict either way."""
    if not isinstance(result, dict):
        raise TypeError(f"write_reports: result must be a dict, got {type(result).__name__}")
    report = typed_report(result) if typed is None else typed
    texts = (jsonio.dumps(to_jsonable(result)), render_markdown(report), render_html(report))
    return dict(zip(REPORT_FILES, texts))


def write_reports(result: dict, out_dir) -> list[Path]:
    """Write report.json, report.md and report.html into ``out_dir`` (created if missing).

    All or nothing (``jsonio.write_all_or_nothing``): a failed write (a full disk) leaves no
    truncated file. Returns the three paths in that order.
    """
    if os.environ.get("CREEPSCAN_CHECK_SCHEMA") and isinstance(result, dict) and "schema_version" in result:
        # the test suite sets this: every report it writes must match the published schema
        from ..result import validate_report

        validate_report(to_jsonable(result))
    return jsonio.write_all_or_nothing(Path(out_dir), render_reports(result))


def summary_text(result, width: int | None = 100) -> str:
    """The one-screen plain-text summary (no ANSI, every line at most ``width`` columns; ``None``:
    nothing cut or wrapped, for piped output) of a typed report, or of a result dict (read with
    ``result.load_report`` first)."""
    return _summary_text(result, width=width)
