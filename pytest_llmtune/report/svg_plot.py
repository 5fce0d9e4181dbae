"""The score-vs-cost plot of an HTML report: inline SVG built here, so the page loads nothing.

One mark per config: its score with a vertical bar for its 95% interval, labelled by its number; configs at the same
point share a mark ("#0, 4, 10") and marks at about the same cost are set a little apart so their bars stay
readable (the tooltip gives the exact values). The Pareto front is a line through its marks, which are ringed; the
winner is orange.

Labels never overlap each other or another mark's dot: each takes the first free place of a list around its mark
(right, left, above, below, then further out with a leader line), the winner's first, then the front's; a label
with no free place is left out and named in a line under the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Point", "pareto_front", "plot", "ticks"]

WIDTH, HEIGHT = 820, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 110, 20, 50  # margins: tick labels left and below, mark labels right
DODGE = 9  # pixels between marks at about the same cost
SPREAD = 72  # pixels at most between the first and the last mark of a column
LINE = 12  # pixels between labels
FONT = 11  # a label's font size, in pixels (the page's CSS)
EM = {"#": 0.84, ",": 0.32, " ": 0.32, "w": 0.82, "i": 0.28, "n": 0.64, "e": 0.62, "r": 0.42}  # DejaVu Sans widths
SLACK = 1.12  # a label's room over its DejaVu width: another sans-serif, bold for the winner
DOT = 7.5  # a mark's radius with its ring
Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass(frozen=True)
class Point:
    """A config on the plot: x its cost (or tokens) per instance, y its score, low..high its interval."""

    number: int
    x: float
    y: float
    low: float | None = None
    high: float | None = None
    dropped: bool = False
    cascade: bool = False  # drawn as a square: a cascade of configs


def pareto_front(points: Sequence[Point], *, maximize: bool = True) -> list[Point]:
    """The points no other point dominates (as cheap or cheaper and as good or better, one of them strictly),
    cheapest first. Points at the same place are all on the front or all off it; costs that differ only in
    floating-point noise (sums of the same prices in another order) are the same."""
    sign = 1 if maximize else -1
    place = {p.number: (same(p.x), sign * same(p.y)) for p in points}

    def dominates(a: Point, b: Point) -> bool:
        (ax, ay), (bx, by) = place[a.number], place[b.number]
        return ax <= bx and ay >= by and (ax, ay) != (bx, by)

    front = [p for p in points if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda p: (place[p.number][0], -place[p.number][1], p.number))


def same(value: float) -> float:
    """`value` to 9 significant digits: equal costs and scores compare equal."""
    return float(f"{value:.9g}")


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) from `low` to `high`."""
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda step: abs(math.log(step / raw)))
    first = math.ceil(low / step - 1e-9)
    return [float(f"{i * step:.12g}") for i in range(first, math.floor(high / step + 1e-9) + 1)]


@dataclass(frozen=True)
class Scale:
    """Data from `low` to `high` onto pixels from `start` to `end`."""

    low: float
    high: float
    start: float
    end: float

    @classmethod
    def fit(cls, values: Sequence[float], start: float, end: float) -> Scale:
        low, high = min(values), max(values)
        pad = (high - low) * 0.06 if high > low else (abs(low) * 0.1 or 1.0)
        return cls(low - pad, high + pad, start, end)

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


@dataclass
class Mark:
    """One or more points at the same place, as drawn, and where its label goes (None: no room for it)."""

    points: list[Point]
    x: float
    y: float
    label_x: float | None = None
    label_y: float = 0.0
    winner: bool = False

    @property
    def label(self) -> str:
        return "#" + ", ".join(str(p.number) for p in self.points) + (" winner" if self.winner else "")

    @property
    def dot(self) -> Box:
        return (self.x - DOT, self.y - DOT, self.x + DOT, self.y + DOT)

    @property
    def width(self) -> float:
        return label_width(self.label)

    def box(self, x: float, y: float) -> Box:
        """The label's box with its text starting at x on the baseline y."""
        return (x, y - 11, x + self.width, y + 3)  # ascent and descent of the 11px font, with a pixel spare


def marks(points: Sequence[Point], sx: Scale, sy: Scale, winner: int | None = None,
          first: frozenset[int] = frozenset()) -> list[Mark]:
    """Points merged where they coincide (interval too), then set apart where they share about the same cost, and
    labelled: the winner's label placed first, then those of the marks numbered in `first` (the front's)."""
    merged: dict[tuple[float | None, ...], list[Point]] = {}
    for point in sorted(points, key=lambda p: (p.x, p.y, p.number)):
        place = tuple(None if v is None else same(v) for v in (point.x, point.y, point.low, point.high))
        merged.setdefault(place, []).append(point)
    drawn = [Mark(group, sx(group[0].x), sy(group[0].y), winner=any(p.number == winner for p in group))
             for group in merged.values()]
    for column in columns(drawn):
        step = min(DODGE, SPREAD / max(len(column) - 1, 1))
        for offset, mark in enumerate(sorted(column, key=lambda m: -m.y)):  # the lowest score leftmost
            mark.x += (offset - (len(column) - 1) / 2) * step
    place_labels(sorted(drawn, key=lambda m: (not m.winner, m.points[0].number not in first, m.y, m.x)), drawn)
    return drawn


def place_labels(ordered: Sequence[Mark], drawn: Sequence[Mark]) -> None:
    """Each label at the first place around its mark that is inside the picture and clear of the labels placed
    before it and of every other mark's dot."""
    taken: list[Box] = []
    for mark in ordered:
        dots = [other.dot for other in drawn if other is not mark]
        for x, y in places(mark):
            box = mark.box(x, y)
            if inside(box) and not any(overlap(box, other) for other in (*taken, *dots)):
                mark.label_x, mark.label_y = x, y
                taken.append(box)
                break


def label_width(text: str) -> float:
    """Pixels `text` takes at most as a label (digits are 0.64 em wide in DejaVu Sans; the rest as EM says)."""
    return SLACK * FONT * sum(EM.get(char, 0.64) for char in text)


def places(mark: Mark) -> list[tuple[float, float]]:
    """Where a mark's label may go, nearest first: right of it, left, above, below; then rings further out."""
    width = mark.width
    found = []
    for ring in range(8):
        reach = DOT + 2 + ring * LINE
        found += [(mark.x + reach, mark.y + 4), (mark.x - reach - width, mark.y + 4),
                  (mark.x - width / 2, mark.y - reach - 3), (mark.x - width / 2, mark.y + reach + 9),
                  (mark.x + reach, mark.y - reach), (mark.x + reach, mark.y + reach + 6),
                  (mark.x - reach - width, mark.y - reach), (mark.x - reach - width, mark.y + reach + 6)]
    return found


def inside(box: Box) -> bool:
    return box[0] >= LEFT + 2 and box[2] <= WIDTH - 2 and box[1] >= TOP + 1 and box[3] <= HEIGHT - BOTTOM - 1


def overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def columns(drawn: Sequence[Mark]) -> list[list[Mark]]:
    """Marks grouped by cost: a mark closer than DODGE to the first of a group joins it."""
    groups: list[list[Mark]] = []
    for mark in sorted(drawn, key=lambda m: m.x):
        if groups and mark.x - groups[-1][0].x < DODGE:
            groups[-1].append(mark)
        else:
            groups.append([mark])
    return groups


def plot(points: Sequence[Point], *, winner: int | None, maximize: bool, x_label: str, y_label: str) -> str:
    """The plot as one <svg> element; empty when no config has a score."""
    if not points:
        return ""
    sx = Scale.fit([p.x for p in points], LEFT, WIDTH - RIGHT)
    bounds = [v for p in points for v in (p.y, p.low, p.high) if v is not None]
    sy = Scale.fit(bounds, HEIGHT - BOTTOM, TOP)
    front = frozenset(p.number for p in pareto_front(points, maximize=maximize))
    drawn = marks(points, sx, sy, winner, front)
    on_front = sorted((m for m in drawn if m.points[0].number in front), key=lambda m: m.x)
    parts = [*axes(sx, sy, x_label, y_label), front_line(on_front)]
    parts += [mark_svg(m, sy, m.points[0].number in front) for m in drawn]
    unlabelled = [m.label for m in drawn if m.label_x is None]
    if unlabelled:
        parts.append(f'<text class="tick" x="{LEFT}" y="{HEIGHT - 22}">no room to label {escape("; ".join(unlabelled))}'
                     " (a mark's tooltip names it)</text>")
    return (f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="score against cost per config">{"".join(parts)}</svg>')


def axes(sx: Scale, sy: Scale, x_label: str, y_label: str) -> list[str]:
    """Grid lines with their tick labels, the frame and the axis titles."""
    parts = []
    for value in ticks(sx.low, sx.high):
        parts.append(f'<line class="grid" x1="{sx(value):.1f}" x2="{sx(value):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
                     f'<text class="tick" x="{sx(value):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                     f'text-anchor="middle">{tick_text(value)}</text>')
    for value in ticks(sy.low, sy.high):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(value):.1f}" y2="{sy(value):.1f}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{sy(value) + 4:.1f}" '
                     f'text-anchor="end">{tick_text(value)}</text>')
    middle = (TOP + HEIGHT - BOTTOM) / 2
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
                 f'height="{HEIGHT - TOP - BOTTOM}"/>'
                 f'<text class="axis" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 10}" '
                 f'text-anchor="middle">{escape(x_label)}</text>'
                 f'<text class="axis" transform="translate(16 {middle}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    return parts


def tick_text(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def front_line(on_front: Sequence[Mark]) -> str:
    if len(on_front) < 2:
        return ""
    coordinates = " ".join(f"{m.x:.1f},{m.y:.1f}" for m in on_front)
    return f'<polyline class="front" points="{coordinates}"/>'


def mark_svg(mark: Mark, sy: Scale, on_front: bool) -> str:
    """A mark's interval bar, its dot (ringed on the front, orange for the winner), label and tooltip; a label
    set away from its mark has a thin line to it."""
    first = mark.points[0]
    kind = "winner" if mark.winner else "dropped" if first.dropped else "config"
    bar = ""
    if first.low is not None and first.high is not None:
        low, high = sy(first.low), sy(first.high)
        bar = (f'<line class="bar" x1="{mark.x:.1f}" x2="{mark.x:.1f}" y1="{low:.1f}" y2="{high:.1f}"/>'
               f'<line class="bar" x1="{mark.x - 3:.1f}" x2="{mark.x + 3:.1f}" y1="{low:.1f}" y2="{low:.1f}"/>'
               f'<line class="bar" x1="{mark.x - 3:.1f}" x2="{mark.x + 3:.1f}" y1="{high:.1f}" y2="{high:.1f}"/>')
    ring = f'<circle class="ring" cx="{mark.x:.1f}" cy="{mark.y:.1f}" r="{DOT}"/>' if on_front else ""
    label = ""
    if mark.label_x is not None:
        left, top, right, bottom = mark.box(mark.label_x, mark.label_y)
        near_x, near_y = min(max(mark.x, left), right), min(max(mark.y, top), bottom)
        if math.hypot(near_x - mark.x, near_y - mark.y) > DOT + LINE:  # far from its mark: a leader line
            label = (f'<line class="leader" x1="{mark.x:.1f}" y1="{mark.y:.1f}" x2="{near_x:.1f}" '
                     f'y2="{near_y:.1f}"/>')
        label += f'<text class="label" x="{mark.label_x:.1f}" y="{mark.label_y:.1f}">{escape(mark.label)}</text>'
    size = 6 if kind == "winner" else 4.5
    dot = (f'<rect class="dot" x="{mark.x - size:.1f}" y="{mark.y - size:.1f}" width="{2 * size:.1f}" '
           f'height="{2 * size:.1f}"/>' if first.cascade else
           f'<circle class="dot" cx="{mark.x:.1f}" cy="{mark.y:.1f}" r="{size}"/>')
    return f'<g class="mark {kind}"><title>{escape(tooltip(mark))}</title>{bar}{ring}{dot}{label}</g>'


def tooltip(mark: Mark) -> str:
    first = mark.points[0]
    bounds = f" [{first.low:.3g}, {first.high:.3g}]" if first.low is not None and first.high is not None else ""
    kind = " (a cascade)" if first.cascade else ""
    return f"{mark.label}{kind}: score {first.y:.3g}{bounds} at {first.x:.3g} per instance"
