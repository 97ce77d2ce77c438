"""A very small inline-SVG chart maker (no matplotlib, no JavaScript, deterministic output).

The caller works in data coordinates that are already linear (a log axis is the caller's
``log2(k)`` or ``log10(FAR)``, with tick labels saying the real values); ``Chart`` maps them to
pixels, draws grid, axes, bands, lines, markers, reference lines and a legend under the plot, and
returns one ``<svg>`` element as a string. Every piece of text is HTML-escaped; every coordinate is
a finite number printed with one decimal, so the same inputs give byte-identical SVG.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
CHAR_W = 6.4          # rough width of one 12px character, for layout and truncation
LEGEND_ROW_H = 18


def esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _f(v: float) -> str:
    s = f"{v:.1f}"
    return "0.0" if s == "-0.0" else s


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


TITLE_CHAR_W = 8.2    # a generous width of one 13px bold character: a title wraps rather than overflows
TITLE_LINE_H = 17


def wrap_title(s: str, width_px: float, max_lines: int = 3) -> list[str]:
    """``s`` broken at spaces into lines of at most ``width_px`` (estimated), at most ``max_lines``
    (only a title longer than that is cut, with an ellipsis)."""
    import textwrap

    lines = textwrap.wrap(str(s), max(int(width_px / TITLE_CHAR_W), 8), break_long_words=True) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = fit_text(lines[-1] + " \u2026", width_px, TITLE_CHAR_W)
    return lines


def fit_text(s: str, width_px: float, char_w: float = CHAR_W) -> str:
    """Truncate ``s`` with an ellipsis so it fits ``width_px`` (``char_w``: width of one character)."""
    n = max(int(width_px / char_w), 4)
    return s if len(s) <= n else s[: n - 1].rstrip() + "\u2026"


class Chart:
    """One plot: ``Chart(...)``, then ``band``/``line``/``markers``/``errorbar``/``hline``, then ``render()``.

    x_range, y_range: (lo, hi) in data units; x_ticks, y_ticks: [(value, label)].
    """

    def __init__(self, *, title: str, x_range: tuple[float, float], y_range: tuple[float, float],
                 x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]],
                 x_label: str, y_label: str, css_class: str = "plot", width: int = 560,
                 plot_height: int = 260, aria: str | None = None):
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.css_class, self.aria = css_class, aria
        self.x0, self.x1 = (float(x_range[0]), float(x_range[1]))
        self.y0, self.y1 = (float(y_range[0]), float(y_range[1]))
        if not self.x1 > self.x0:
            self.x1 = self.x0 + 1.0
        if not self.y1 > self.y0:
            self.y1 = self.y0 + 1.0
        self.x_ticks = [(float(v), str(label)) for v, label in x_ticks if finite(v)]
        self.y_ticks = [(float(v), str(label)) for v, label in y_ticks if finite(v)]
        self.width = width
        self.title_lines = wrap_title(title, width - 20)
        self.left, self.right = 62, 16
        self.top = 30 + TITLE_LINE_H * (len(self.title_lines) - 1)  # room for a title on several lines
        self.plot_w = width - self.left - self.right
        self.plot_h = plot_height
        self._layers: dict[int, list[str]] = {0: [], 1: [], 2: [], 3: []}
        self._legend: list[dict] = []
        self._vseps: list[float] = []

    # --- coordinates ---------------------------------------------------------------------
    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y: float) -> float:
        y = min(max(y, self.y0), self.y1)
        return self.top + (self.y1 - y) / (self.y1 - self.y0) * self.plot_h

    def _in_x(self, x: Any) -> bool:
        return finite(x) and self.x0 - 1e-9 <= x <= self.x1 + 1e-9

    # --- marks ---------------------------------------------------------------------------
    def band(self, pts: Iterable[tuple[Any, Any, Any]], color: str, opacity: float = 0.18) -> None:
        """A shaded region between lo and hi; splits where a value is missing."""
        for seg in _segments(pts, lambda p: self._in_x(p[0]) and finite(p[1]) and finite(p[2])):
            if len(seg) < 2:
                continue
            upper = [(self.px(x), self.py(hi)) for x, lo, hi in seg]
            lower = [(self.px(x), self.py(lo)) for x, lo, hi in reversed(seg)]
            d = _path(upper + lower) + " Z"
            self._layers[0].append(f'<path class="band" d="{d}" fill="{esc(color)}" '
                                   f'fill-opacity="{opacity:.2f}" stroke="none"/>')

    def line(self, pts: Iterable[tuple[Any, Any]], color: str, width: float = 2.0,
             dash: str | None = None, marker: str | None = None, opacity: float = 1.0,
             css: str = "series") -> None:
        """A polyline through the points (split where y is missing), optional markers at each point."""
        kept = []
        for seg in _segments(pts, lambda p: self._in_x(p[0]) and finite(p[1])):
            coords = [(self.px(x), self.py(y)) for x, y in seg]
            kept.extend(coords)
            if len(coords) >= 2:
                self._layers[2].append(
                    f'<path class="{esc(css)}" d="{_path(coords)}" fill="none" stroke="{esc(color)}" '
                    f'stroke-width="{width:.1f}"{_dash(dash)}{_op(opacity)} '
                    f'stroke-linejoin="round" stroke-linecap="round"/>')
        if marker:
            for cx, cy in kept:
                self._layers[3].append(_marker(marker, cx, cy, color, opacity))

    def markers(self, pts: Iterable[tuple[Any, Any]], color: str, shape: str = "circle",
                opacity: float = 1.0) -> None:
        for x, y in pts:
            if self._in_x(x) and finite(y):
                self._layers[3].append(_marker(shape, self.px(x), self.py(y), color, opacity))

    def errorbar(self, x: Any, lo: Any, hi: Any, color: str, width: float = 1.6,
                 opacity: float = 1.0) -> None:
        if not (self._in_x(x) and finite(lo) and finite(hi)):
            return
        cx, ylo, yhi = self.px(x), self.py(lo), self.py(hi)
        d = (f"M {_f(cx)} {_f(ylo)} L {_f(cx)} {_f(yhi)} M {_f(cx - 5)} {_f(ylo)} L {_f(cx + 5)} {_f(ylo)} "
             f"M {_f(cx - 5)} {_f(yhi)} L {_f(cx + 5)} {_f(yhi)}")
        self._layers[3].append(f'<path class="errorbar" d="{d}" fill="none" stroke="{esc(color)}" '
                               f'stroke-width="{width:.1f}"{_op(opacity)}/>')

    def hline(self, y: Any, color: str, dash: str | None = None, width: float = 1.4,
              css: str = "ref") -> None:
        if not finite(y) or not self.y0 <= y <= self.y1:
            return
        yy = self.py(y)
        d = f"M {_f(self.left)} {_f(yy)} L {_f(self.left + self.plot_w)} {_f(yy)}"
        self._layers[1].append(f'<path class="{esc(css)}" d="{d}" fill="none" stroke="{esc(color)}" '
                               f'stroke-width="{width:.1f}"{_dash(dash)}/>')

    def curve(self, fn, color: str, width: float = 1.0, dash: str | None = None,
              n: int = 48, css: str = "ref") -> None:
        """A reference curve y = fn(x) sampled across the x range (e.g. TAR = FAR on a log axis)."""
        pts = [(self.x0 + (self.x1 - self.x0) * i / (n - 1),) for i in range(n)]
        coords = []
        for (x,) in pts:
            y = fn(x)
            if finite(y) and self.y0 <= y <= self.y1:
                coords.append((self.px(x), self.py(y)))
        if len(coords) >= 2:
            self._layers[1].append(f'<path class="{esc(css)}" d="{_path(coords)}" fill="none" '
                                   f'stroke="{esc(color)}" stroke-width="{width:.1f}"{_dash(dash)}/>')

    def vline(self, x: Any, color: str, dash: str | None = None, width: float = 1.4,
              css: str = "ref") -> None:
        """A vertical reference line across the plot (e.g. where a level rose)."""
        if not self._in_x(x):
            return
        xx = self.px(x)
        d = f"M {_f(xx)} {_f(self.top)} L {_f(xx)} {_f(self.top + self.plot_h)}"
        self._layers[1].append(f'<path class="{esc(css)}" d="{d}" fill="none" stroke="{esc(color)}" '
                               f'stroke-width="{width:.1f}"{_dash(dash)}/>')

    def vseparator(self, x: float) -> None:
        """A light vertical rule (e.g. between the few-shot k and the "all" column)."""
        if self._in_x(x):
            self._vseps.append(x)

    def legend(self, label: str, color: str, *, dash: str | None = None, width: float = 2.0,
               band: bool = False, marker: str | None = None, line: bool = True,
               opacity: float = 1.0) -> None:
        self._legend.append(dict(label=label, color=color, dash=dash, width=width, band=band,
                                 marker=marker, line=line, opacity=opacity))

    # --- output --------------------------------------------------------------------------
    def _legend_layout(self) -> list[tuple[float, float, dict]]:
        """Place legend items left to right, wrapping rows within the plot width."""
        out, x, row = [], 0.0, 0
        avail = self.width - 20
        for item in self._legend:
            w = 30 + CHAR_W * len(item["label"]) + 16
            if x > 0 and x + w > avail:
                x, row = 0.0, row + 1
            out.append((10 + x, row, item))
            x += w
        return out

    def render(self) -> str:
        layout = self._legend_layout()
        n_rows = (max(r for _, r, _ in layout) + 1) if layout else 0
        axis_bottom = self.top + self.plot_h
        legend_top = axis_bottom + 50
        height = int(legend_top + n_rows * LEGEND_ROW_H + (6 if n_rows else 0))
        L, R, T, B = self.left, self.left + self.plot_w, self.top, axis_bottom
        aria = self.aria or self.title
        out = [f'<svg class="{esc(self.css_class)}" viewBox="0 0 {self.width} {height}" '
               f'width="{self.width}" height="{height}" role="img" aria-label="{esc(aria)}" '
               f'font-family="{esc(FONT)}" font-size="12">',
               f"<title>{esc(aria)}</title>",
               f'<rect x="0" y="0" width="{self.width}" height="{height}" fill="#ffffff"/>']
        # grid
        grid = []
        for v, _ in self.y_ticks:
            if self.y0 <= v <= self.y1:
                yy = self.py(v)
                grid.append(f"M {_f(L)} {_f(yy)} L {_f(R)} {_f(yy)}")
        for v, _ in self.x_ticks:
            if self._in_x(v):
                xx = self.px(v)
                grid.append(f"M {_f(xx)} {_f(T)} L {_f(xx)} {_f(B)}")
        if grid:
            out.append(f'<path class="grid" d="{" ".join(grid)}" fill="none" stroke="#e6e6e6" '
                       f'stroke-width="1"/>')
        for x in self._vseps:
            xx = self.px(x)
            out.append(f'<path class="separator" d="M {_f(xx)} {_f(T)} L {_f(xx)} {_f(B)}" '
                       f'fill="none" stroke="#9a9a9a" stroke-width="1" stroke-dasharray="2 3"/>')
        # frame
        out.append(f'<path class="axes" d="M {_f(L)} {_f(T)} L {_f(L)} {_f(B)} L {_f(R)} {_f(B)}" '
                   f'fill="none" stroke="#333333" stroke-width="1"/>')
        # ticks and tick labels
        for v, label in self.y_ticks:
            if self.y0 <= v <= self.y1:
                yy = self.py(v)
                out.append(f'<text x="{_f(L - 6)}" y="{_f(yy + 4)}" text-anchor="end" '
                           f'fill="#333333">{esc(label)}</text>')
        for v, label in self.x_ticks:
            if self._in_x(v):
                xx = self.px(v)
                out.append(f'<text x="{_f(xx)}" y="{_f(B + 16)}" text-anchor="middle" '
                           f'fill="#333333">{esc(label)}</text>')
        # axis labels and title
        out.append(f'<text class="xlabel" x="{_f((L + R) / 2)}" y="{_f(B + 36)}" text-anchor="middle" '
                   f'fill="#222222">{esc(fit_text(self.x_label, self.plot_w))}</text>')
        ymid = (T + B) / 2
        out.append(f'<text class="ylabel" x="{_f(16)}" y="{_f(ymid)}" text-anchor="middle" '
                   f'transform="rotate(-90 16 {_f(ymid)})" fill="#222222">'
                   f'{esc(fit_text(self.y_label, self.plot_h))}</text>')
        spans = "".join(f'<tspan x="10" dy="{0 if i == 0 else TITLE_LINE_H}">{esc(line)}</tspan>'
                        for i, line in enumerate(self.title_lines))
        out.append(f'<text class="title" x="10" y="18" font-size="13" font-weight="600" '
                   f'fill="#111111">{spans}</text>')
        for layer in (0, 1, 2, 3):
            out.extend(self._layers[layer])
        # legend
        for x, row, item in layout:
            y = legend_top + row * LEGEND_ROW_H
            cy = y - 4
            col = esc(item["color"])
            if item["band"]:
                out.append(f'<rect x="{_f(x)}" y="{_f(cy - 6)}" width="24" height="12" fill="{col}" '
                           f'fill-opacity="0.18"/>')
            if item["line"]:
                out.append(f'<path d="M {_f(x)} {_f(cy)} L {_f(x + 24)} {_f(cy)}" fill="none" '
                           f'stroke="{col}" stroke-width="{item["width"]:.1f}"{_dash(item["dash"])}'
                           f'{_op(item["opacity"])}/>')
            if item["marker"]:
                out.append(_marker(item["marker"], x + 12, cy, item["color"], item["opacity"]))
            out.append(f'<text x="{_f(x + 30)}" y="{_f(y)}" fill="#222222">{esc(item["label"])}</text>')
        out.append("</svg>")
        return "\n".join(out)


# --- helpers -----------------------------------------------------------------------------

def _segments(pts: Iterable[tuple], ok) -> list[list[tuple]]:
    segs, cur = [], []
    for p in pts:
        if ok(p):
            cur.append(tuple(float(v) for v in p))
        elif cur:
            segs.append(cur)
            cur = []
    if cur:
        segs.append(cur)
    return segs


def _path(coords: Sequence[tuple[float, float]]) -> str:
    head, *rest = coords
    return " ".join([f"M {_f(head[0])} {_f(head[1])}"] + [f"L {_f(x)} {_f(y)}" for x, y in rest])


def _dash(dash: str | None) -> str:
    return f' stroke-dasharray="{esc(dash)}"' if dash else ""


def _op(opacity: float) -> str:
    return f' stroke-opacity="{opacity:.2f}"' if opacity < 1.0 else ""


def _marker(shape: str, cx: float, cy: float, color: str, opacity: float = 1.0) -> str:
    col = esc(color)
    op = f' fill-opacity="{opacity:.2f}" stroke-opacity="{opacity:.2f}"' if opacity < 1.0 else ""
    if shape == "square":
        return (f'<path class="marker" d="M {_f(cx - 4)} {_f(cy - 4)} L {_f(cx + 4)} {_f(cy - 4)} '
                f'L {_f(cx + 4)} {_f(cy + 4)} L {_f(cx - 4)} {_f(cy + 4)} Z" fill="{col}" '
                f'stroke="#ffffff" stroke-width="1"{op}/>')
    if shape == "diamond":
        return (f'<path class="marker" d="M {_f(cx)} {_f(cy - 6)} L {_f(cx + 6)} {_f(cy)} '
                f'L {_f(cx)} {_f(cy + 6)} L {_f(cx - 6)} {_f(cy)} Z" fill="{col}" '
                f'stroke="#ffffff" stroke-width="1"{op}/>')
    if shape == "open":
        return (f'<circle class="marker" cx="{_f(cx)}" cy="{_f(cy)}" r="4" fill="#ffffff" '
                f'stroke="{col}" stroke-width="1.6"{op}/>')
    return (f'<circle class="marker" cx="{_f(cx)}" cy="{_f(cy)}" r="3.5" fill="{col}" '
            f'stroke="#ffffff" stroke-width="1"{op}/>')
