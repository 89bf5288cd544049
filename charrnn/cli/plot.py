"""A small line plot for the terminal in braille characters (2 x 4 dots a cell), drawn as rich Text.

One plot, a few series against a shared x axis: a series is a line of braille dots, or, with a glyph, one glyph
per point (so series stay apart without colour, e.g. with NO_COLOR or in a file). A marked point gets a glyph of
its own. Good enough to read a loss curve at a glance; exact values are in `charrnn info --json`.
"""

from __future__ import annotations

from dataclasses import dataclass

BRAILLE = 0x2800
DOT = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # DOT[row][col] of a 2 x 4 braille cell


@dataclass
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    style: str = ""
    glyph: str | None = None  # None: a braille line through the points


def _ticks(lo: float, hi: float, rows: int) -> dict[int, float]:
    """Row -> value for the y labels: top, middle and bottom."""
    return {0: hi, (rows - 1) // 2: (hi + lo) / 2, rows - 1: lo}


def _line(x0: int, y0: int, x1: int, y1: int):
    """Every dot of the straight segment between two dots (Bresenham)."""
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        yield x0, y0
        if (x0, y0) == (x1, y1):
            return
        e2 = 2 * err
        if e2 >= dy:
            err, x0 = err + dy, x0 + sx
        if e2 <= dx:
            err, y0 = err + dx, y0 + sy


def plot(series: list[Series], width: int, height: int = 10, mark: tuple[float, float, str, str] | None = None,
         y_format: str = "{:.2f}", x_format: str = "{:,.0f}", x_range=None, y_range=None, x_label: str = ""):
    """The series drawn in `width` x `height` cells (labels included) -> a rich Text of height + 2 lines.

    `mark` is (x, y, glyph, style): one point drawn over the lines. The y axis spans the data (every series),
    the x axis from the smallest to the largest x; its first and last values are written under it, each after
    `x_label` (e.g. "step 1 ... step 400") when there is room. A given x_range or y_range (lo, hi) fixes an axis
    instead (a scatter of fractions: (0, 1)).
    """
    from rich.text import Text

    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys)]
    if not points:
        return Text("(nothing to plot)")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = x_range or (min(xs), max(xs))
    y_lo, y_hi = y_range or (min(ys), max(ys))
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    labels = {row: y_format.format(v) for row, v in _ticks(y_lo, y_hi, height).items()}
    pad = max(len(s) for s in labels.values())
    cols = max(width - pad - 2, 4)
    dots_w, dots_h = 2 * cols, 4 * height

    def to_dot(x: float, y: float) -> tuple[int, int]:
        fx = 0.0 if x_hi == x_lo else (x - x_lo) / (x_hi - x_lo)
        fy = (y_hi - y) / (y_hi - y_lo)
        return min(int(fx * (dots_w - 1) + 0.5), dots_w - 1), min(int(fy * (dots_h - 1) + 0.5), dots_h - 1)

    cells: dict[tuple[int, int], list] = {}  # (row, col) -> [braille bits, style, glyph]
    for s in series:
        dots = [to_dot(x, y) for x, y in zip(s.xs, s.ys)]
        if s.glyph:
            for dx, dy in dots:
                cells[(dy // 4, dx // 2)] = [0, s.style, s.glyph]
            continue
        path = [dots[0]] if len(dots) == 1 else [d for a, b in zip(dots, dots[1:]) for d in _line(*a, *b)]
        for dx, dy in path:
            cell = cells.setdefault((dy // 4, dx // 2), [0, s.style, None])
            if cell[2] is None:
                cell[0] |= DOT[dy % 4][dx % 2]
                cell[1] = s.style
    if mark is not None:
        dx, dy = to_dot(mark[0], mark[1])
        cells[(dy // 4, dx // 2)] = [0, mark[3], mark[2]]
    text = Text(no_wrap=True, overflow="crop")
    for row in range(height):
        text.append(f"{labels.get(row, ''):>{pad}} {'┤' if row in labels else '│'}", style="dim")
        for col in range(cols):
            bits, style, glyph = cells.get((row, col), (0, "", None))
            text.append(glyph or chr(BRAILLE + bits) if (glyph or bits) else " ", style=style)
        text.append("\n")
    text.append(" " * pad + " └" + "─" * cols + "\n", style="dim")
    first, last = x_format.format(x_lo), x_format.format(x_hi)
    if x_label and len(first) + len(last) + 2 * len(x_label) + 4 <= cols:
        first, last = f"{x_label} {first}", f"{x_label} {last}"
    gap = max(cols - len(first) - len(last) + 2, 1)
    text.append(" " * pad + first.rjust(2) + " " * gap + last, style="dim")
    return text
