"""A key's 30 days as small bar charts drawn on the server (templates/keys/_usage_chart.html).

One chart per measure, each with its own scale, title and labelled maximum, so nothing
depends on telling colours apart; every bar carries its day and value (as an SVG title
and as data attributes), and the page prints the same numbers in a table.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.template.defaultfilters import filesizeformat

from .usage import KeyPeriod

WIDTH = 300
HEIGHT = 100
# Room above the bars for the maximum's label and below for the day labels.
TOP = 14
BOTTOM = 14
GAP = 2
MEASURES = (
    ("requests", "Requests", False),
    ("bytes_in", "Bytes in", True),
    ("bytes_out", "Bytes out", True),
    ("errors", "Errors", False),
)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: str
    value: int
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    measure: str
    title: str
    total_text: str
    max_text: str
    bars: list[Bar]
    first_day: str
    last_day: str
    baseline: float


def _text(value: int, is_bytes: bool) -> str:
    return str(filesizeformat(value)) if is_bytes else f"{value:,}"


def charts(usage: KeyPeriod) -> list[Chart]:
    """One chart per measure over the period's days, oldest on the left."""
    count = len(usage.days)
    slot = WIDTH / max(count, 1)
    plot = HEIGHT - TOP - BOTTOM
    result = []
    for measure, title, is_bytes in MEASURES:
        values = [getattr(day, measure) for day in usage.days]
        top = max(values, default=0)
        bars = []
        for position, (day, value) in enumerate(zip(usage.days, values, strict=True)):
            height = round(plot * value / top, 2) if top else 0.0
            # A day with any traffic shows at least a sliver, so it never reads as zero.
            if value and height < 1:
                height = 1.0
            bars.append(
                Bar(
                    x=round(position * slot + GAP / 2, 2),
                    y=round(TOP + plot - height, 2),
                    width=round(slot - GAP, 2),
                    height=height,
                    day=day.day.isoformat(),
                    value=value,
                    text=_text(value, is_bytes),
                )
            )
        result.append(
            Chart(
                measure=measure,
                title=title,
                total_text=_text(sum(values), is_bytes),
                max_text=_text(top, is_bytes),
                bars=bars,
                first_day=usage.days[0].day.strftime("%b %d") if count else "",
                last_day=usage.days[-1].day.strftime("%b %d") if count else "",
                baseline=TOP + plot,
            )
        )
    return result
