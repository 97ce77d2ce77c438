"""report.html: the view model (``view.build_view``) through ``templates/report.html.j2``.

One self-contained page (inline CSS and SVG, no scripts, no external resources, a CSP that forbids
both). Autoescape is on, so every data string is escaped in text and attributes; the plots escape
their own text (svg.py). No image of a person is embedded: the page shows numbers and curves only.
"""

from __future__ import annotations

from .templating import environment
from .view import build_view


def render_html(result) -> str:
    """The text of report.html for an audit, compare or sweep report (typed, or report.json's dict;
    deterministic)."""
    page = environment("html").get_template("report.html.j2").render(view=build_view(result))
    return "\n".join(line for line in page.splitlines() if line.strip()) + "\n"
