"""Report layer: the JSON-able result dict -> report.json, report.md, report.html, stdout summary.

One view model (``view.build_view``: the dict -> sections, tables, badges, figures) feeds both
Jinja2 templates (``templates/report.md.j2``, ``templates/report.html.j2``). Renderers read only the
result dict (see docs/INTERFACES.md); they never touch arrays, models or images, and the same dict
always gives byte-identical files.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import jsonio
from .html import render_html
from .jsonio import to_jsonable
from .markdown import render_markdown
from .summary import summary_text as _summary_text

__all__ = ["write_reports", "summary_text", "render_markdown", "render_html", "to_jsonable"]

REPORT_FILES = ("report.json", "report.md", "report.html")


def write_reports(result: dict, out_dir) -> list[Path]:
    """Write report.json, report.md and report.html into ``out_dir`` (created if missing).

    NaN and infinities become null; each file is written atomically (temp file + ``os.replace``).
    Returns the three paths in that order.
    """
    if not isinstance(result, dict):
        raise TypeError(f"write_reports: result must be a dict, got {type(result).__name__}")
    clean = to_jsonable(result)
    if os.environ.get("CREEPSCAN_CHECK_SCHEMA") and "schema_version" in clean:
        # the test suite sets this: every report it writes must match the published schema
        from ..result import validate_report

        validate_report(clean)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = (jsonio.dumps(clean), render_markdown(clean), render_html(clean))
    return [jsonio.write_atomic(out / name, text) for name, text in zip(REPORT_FILES, texts)]


def summary_text(result: dict, width: int | None = 100) -> str:
    """The one-screen plain-text summary (no ANSI, every line at most ``width`` columns; ``None``:
    nothing cut or wrapped, for piped output)."""
    return _summary_text(to_jsonable(result), width=width)
