"""Hand-written inline SVG charts for the HTML report: no library, no script, no asset.

Geometry is integer arithmetic on atomic amounts (a bar's height is
``amount * plot_height // axis_max``), so no float ever touches money. Every
text that reaches the SVG is escaped: labels such as model names come from
clients and must not become markup in an operator's browser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

from walletd.domain.money import ATOMIC_PER_USD, format_usd

FONT = "font-family:system-ui,sans-serif;font-size:11px"


def short_usd(atomic: int) -> str:
    """An exact amount without trailing zeros beyond two decimals: 0.003, 1.50, 12.00."""
    text = format_usd(atomic).rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def nice_max(value: int) -> tuple[int, int]:
    """An axis maximum >= ``value`` and its tick step, both 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return ATOMIC_PER_USD // 100, ATOMIC_PER_USD // 400
    step = 1
    while True:
        for mult in (1, 2, 5):
            candidate = step * mult
            if candidate * 5 >= value:
                ticks = -(-value // candidate)
                return candidate * ticks, candidate
        step *= 10


@dataclass(frozen=True)
class Series:
    """One stacked layer of a bar chart: its name, colour and an amount per bucket."""

    name: str
    color: str
    values: Sequence[int]


def _text(x: int, y: int, body: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x}" y="{y}" text-anchor="{anchor}" style="{FONT}"{extra}>{escape(body)}</text>'
    )


def _y_axis(left: int, top: int, width: int, height: int, axis_max: int, step: int) -> list[str]:
    parts = []
    tick = 0
    while tick <= axis_max:
        y = top + height - tick * height // axis_max
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#e3e3e3"/>')
        parts.append(_text(left - 6, y + 4, short_usd(tick), "end"))
        tick += step
    return parts


def _x_labels(labels: Sequence[str], left: int, slot: int, baseline: int) -> list[str]:
    every = max(1, -(-len(labels) // 8))
    return [
        _text(left + i * slot + slot // 2, baseline + 16, label, "middle")
        for i, label in enumerate(labels)
        if i % every == 0
    ]


def stacked_bars(
    title: str,
    labels: Sequence[str],
    layers: Sequence[Series],
    *,
    width: int = 560,
    height: int = 220,
    css_class: str = "chart",
) -> str:
    """A stacked bar chart, one bar per label, with a USDC axis and a legend."""
    left, top, right, bottom = 64, 28, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(layer.values[i] for layer in layers) for i in range(len(labels))]
    axis_max, step = nice_max(max(totals, default=0))
    slot = max(1, plot_w // max(1, len(labels)))
    bar_w = max(1, min(slot * 7 // 10, 48))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        _text(left, 16, title, extra=' font-weight="bold"'),
        *_y_axis(left, top, plot_w, plot_h, axis_max, step),
    ]
    for i in range(len(labels)):
        y = top + plot_h
        x = left + i * slot + (slot - bar_w) // 2
        for layer in layers:
            value = layer.values[i]
            if value <= 0:
                continue
            h = max(1, value * plot_h // axis_max)
            y -= h
            parts.append(
                f'<rect class="bar" x="{x}" y="{y}" width="{bar_w}" height="{h}" '
                f'fill="{layer.color}"><title>{escape(labels[i])} {escape(layer.name)}: '
                f"{format_usd(value)} USDC</title></rect>"
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>'
    )
    parts += _x_labels(labels, left, slot, top + plot_h)
    parts += _legend(layers, width - right, 16)
    parts.append("</svg>")
    return "".join(parts)


def _legend(layers: Sequence[Series], right: int, y: int) -> list[str]:
    parts = []
    x = right
    for layer in reversed(layers):
        x -= 8 + 7 * len(layer.name) + 14
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{layer.color}"/>')
        parts.append(_text(x + 14, y, layer.name))
    return parts


def horizontal_bars(
    title: str,
    items: Sequence[tuple[str, int]],
    *,
    color: str = "#3b6fb6",
    width: int = 560,
    css_class: str = "chart",
    suffix: Mapping[str, str] | None = None,
    value_text: Callable[[int], str] = short_usd,
) -> str:
    """A horizontal bar chart, one labelled bar per item (label, value), largest first.

    Values are amounts in atomic units unless ``value_text`` says otherwise.
    """
    row_h, top, label_w, value_w = 22, 28, 190, 110
    height = top + row_h * max(1, len(items)) + 8
    bar_space = width - label_w - value_w - 12
    largest = max((amount for _, amount in items), default=0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        _text(0, 16, title, extra=' font-weight="bold"'),
    ]
    if not items:
        parts.append(_text(0, top + 14, "nothing in this period"))
    for i, (label, amount) in enumerate(items):
        y = top + i * row_h
        w = amount * bar_space // largest if largest else 0
        shown = label if len(label) <= 28 else label[:13] + "…" + label[-13:]
        parts.append(_text(label_w - 6, y + 14, shown, "end"))
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{max(w, 1)}" height="{row_h - 6}" '
            f'fill="{color}"><title>{escape(label)}: {escape(value_text(amount))}</title></rect>'
        )
        note = (suffix or {}).get(label, "")
        parts.append(_text(label_w + w + 6, y + 14, f"{value_text(amount)} {note}".strip()))
    parts.append("</svg>")
    return "".join(parts)
