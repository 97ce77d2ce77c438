"""The Jinja2 environments of the two report formats (templates in ``templates/``).

Both have autoescape on, so a macro's output is markup and is not escaped twice. What each format
does to a value printed with ``{{ }}`` is its ``finalize``: the Markdown environment applies the
``md`` escape (``markdown.md``) to every value, the HTML one lets autoescape do its work and only
turns None into n/a. Undefined names are errors, so a template typo fails the tests instead of
printing nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup

from ._fmt import NA

TEMPLATES = Path(__file__).parent / "templates"


def _markup_or(escape: Callable[[Any], str]) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, Markup):           # a macro's output: already rendered
            return value
        return Markup(escape(value))
    return finalize


def _html_value(value: Any) -> Any:
    return NA if value is None else value


@lru_cache(maxsize=None)
def environment(fmt: str, escape: Callable[[Any], str] | None = None) -> jinja2.Environment:
    """The environment for ``fmt`` ("md" with its ``escape`` function, or "html")."""
    if fmt == "md":
        finalize = _markup_or(escape)
    elif fmt == "html":
        finalize = _html_value
    else:
        raise ValueError(f"report format must be 'md' or 'html', got {fmt!r}")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              finalize=finalize, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
