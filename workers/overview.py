"""The fleet at a glance, for operators: what the admin's overview page shows.

Everything is read here (one query per panel, bounded to the last 24 hours where it
counts rows) and drawn as plain SVG on the server: no JavaScript, nothing from a CDN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from django.db.models import Count, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from transfers.models import Transfer
from transfers.states import TERMINAL, State

WINDOW = timedelta(hours=24)

# One colour per state, in the order the stack is drawn (finished at the bottom).
STATE_COLOURS: dict[str, str] = {
    State.SUCCEEDED: "#2e7d32",
    State.SKIPPED: "#9e9d24",
    State.CANCELLED: "#757575",
    State.DEAD: "#c62828",
    State.FAILED: "#ef6c00",
    State.DELIVERING: "#1565c0",
    State.STAGED: "#6a1b9a",
    State.STAGING: "#8e24aa",
    State.PENDING: "#90a4ae",
}


@dataclass
class Overview:
    hours: list[datetime]
    per_hour: dict[datetime, dict[str, int]]  # hour -> state -> transfers created then
    totals: dict[str, int]
    bytes_by_region: dict[str, int]
    dead_by_tenant_and_code: list[dict]
    oldest_pending: Transfer | None
    unfinished: int


def fleet_overview(now: datetime | None = None) -> Overview:
    """Transfers created in the last 24 h by hour and state, bytes delivered per region, dead
    transfers by tenant and error code, and the oldest transfer still waiting to start."""
    now = now or timezone.now()
    since = now - WINDOW
    recent = Transfer.objects.filter(created_at__gte=since)
    hours = [(now - timedelta(hours=h)).replace(minute=0, second=0, microsecond=0) for h in range(23, -1, -1)]
    per_hour: dict[datetime, dict[str, int]] = {h: {} for h in hours}
    totals: dict[str, int] = {}
    rows = recent.annotate(hour=TruncHour("created_at")).values("hour", "state").annotate(n=Count("id"))
    for row in rows:
        hour = row["hour"]
        if hour in per_hour:
            per_hour[hour][row["state"]] = row["n"]
        totals[row["state"]] = totals.get(row["state"], 0) + row["n"]
    delivered = (
        Transfer.objects.filter(state=State.SUCCEEDED, finished_at__gte=since)
        .values("region")
        .annotate(total=Sum("bytes_total"))
    )
    dead = (
        recent.filter(state=State.DEAD)
        .values("tenant__name", "last_error_code")
        .annotate(n=Count("id"))
        .order_by("-n", "tenant__name")[:50]
    )
    oldest = (
        Transfer.objects.filter(state=State.PENDING)
        .order_by("created_at")
        .only("id", "created_at", "tenant_id", "region")
        .first()
    )
    unfinished = Transfer.objects.exclude(state__in=list(TERMINAL)).aggregate(n=Count("id"))["n"]
    return Overview(
        hours=hours,
        per_hour=per_hour,
        totals=totals,
        bytes_by_region={row["region"] or "-": row["total"] or 0 for row in delivered},
        dead_by_tenant_and_code=[
            {"tenant": r["tenant__name"], "code": r["last_error_code"] or "-", "count": r["n"]} for r in dead
        ],
        oldest_pending=oldest,
        unfinished=unfinished,
    )


def stacked_bars_svg(
    labels: list[str], stacks: list[dict[str, int]], colours: dict[str, str], *, width: int = 720, height: int = 180
) -> str:
    """A stacked bar chart as an SVG string: one bar per label, segments in ``colours``' order.

    Pure: the admin page embeds the result; text is escaped here."""
    pad_left, pad_bottom, pad_top = 36, 20, 8
    plot_h = height - pad_bottom - pad_top
    peak = max((sum(s.values()) for s in stacks), default=0) or 1
    slot = (width - pad_left) / max(len(labels), 1)
    bar_w = max(slot * 0.7, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="stacked bar chart">',
        f'<text x="2" y="{pad_top + 10}" font-size="10">{peak}</text>',
        f'<text x="2" y="{pad_top + plot_h}" font-size="10">0</text>',
    ]
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        x = pad_left + i * slot
        y = float(pad_top + plot_h)
        for key, colour in colours.items():
            n = stack.get(key, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)} {escape(str(key))}: {n}</title></rect>"
            )
        if i % 3 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 5}" font-size="10">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbars_svg(values: dict[str, int], *, unit: str = "", width: int = 480, row: int = 22) -> str:
    """Horizontal bars, one per key, labelled with the value (and ``unit``). Pure."""
    peak = max(values.values(), default=0) or 1
    height = row * max(len(values), 1) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i, (key, value) in enumerate(values.items()):
        y = i * row + 2
        w = (width - 220) * value / peak
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{escape(key)}</text>')
        parts.append(f'<rect x="100" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="#1565c0"/>')
        parts.append(f'<text x="{104 + w:.1f}" y="{y + 14}" font-size="12">{escape(f"{value:,}{unit}")}</text>')
    parts.append("</svg>")
    return "".join(parts)
