"""What people see: tables, the timeline, the progress bar; ``--json`` for scripts.

Standard output carries the result (a table, or JSON with ``--json``); errors and
progress go to standard error, so ``ferry … --json | jq`` sees only the document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from ferry_cli.client import TERMINAL, ApiError

STATE_STYLE = {
    "succeeded": "green",
    "skipped": "green",
    "pending": "cyan",
    "staging": "blue",
    "staged": "blue",
    "delivering": "blue",
    "failed": "yellow",
    "dead": "red",
    "cancelled": "magenta",
}


def out() -> Console:
    # Made per call: tests swap sys.stdout, and a Console binds the stream it was made with.
    # No markup: text from the API (messages, paths, names) is printed as it is, never read
    # as rich markup (a "[/]" in a file name would otherwise be an error).
    return Console(file=sys.stdout, soft_wrap=True, highlight=False, markup=False)


def err() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False, markup=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def print_error(error: ApiError, *, as_json: bool = False) -> None:
    """The API's error, with its code, field messages and request id, on standard error."""
    if as_json:
        sys.stderr.write(json.dumps(error.as_dict(), sort_keys=True) + "\n")
        return
    console = err()
    console.print(Text.assemble(("Error", "bold red"), f" ({error.code}, HTTP {error.status}): ", error.message))
    for field, messages in sorted(error.fields.items()):
        for message in messages:
            console.print(Text(f"  {field}: {message}"))
    if error.request_id:
        console.print(Text(f"  request id: {error.request_id}", style="dim"))


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def short_time(text: str | None) -> str:
    """``2026-12-04T19:26:56.123456Z`` → ``2026-12-04 19:26:56``."""
    if not text:
        return ""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]], *, title: Text | None = None) -> None:
    grid = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell)) for cell in row))
    out().print(grid)


def transfers_table(rows: list[dict[str, Any]]) -> None:
    table(
        ["ID", "STATE", "SOURCE", "DESTINATION", "SIZE", "ATTEMPT", "CREATED", "ERROR"],
        (
            [
                t["id"],
                state_text(t["state"]),
                t["source"]["path"],
                t["destination"]["path"],
                human_bytes(t["progress"]["bytes_total"] or t["source"]["size"]),
                f"{t['attempt']}/{t['max_attempts']}",
                short_time(t["created_at"]),
                (t["error"] or {}).get("code", ""),
            ]
            for t in rows
        ),
    )


def transfer_view(t: dict[str, Any], endpoints: dict[str, str] | None = None) -> None:
    """One transfer: its facts, then its timeline (each state change, when and where)."""
    names = endpoints or {}
    console = out()
    progress = t["progress"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    rows: list[tuple[str, Text | str]] = [
        ("Transfer", t["id"]),
        ("State", state_text(t["state"])),
        ("Route", t.get("route") or "(ad-hoc)"),
        ("From", f"{names.get(t['source']['endpoint'], t['source']['endpoint'])}:{t['source']['path']}"),
        ("To", f"{names.get(t['destination']['endpoint'], t['destination']['endpoint'])}:{t['destination']['path']}"),
        (
            "Progress",
            f"{human_bytes(progress['bytes_done'])} of {human_bytes(progress['bytes_total'])}"
            + (f" at {human_bytes(progress['rate_bytes_per_s'])}/s" if progress.get("rate_bytes_per_s") else ""),
        ),
        ("Attempt", f"{t['attempt']} of {t['max_attempts']}"),
        ("Region", t.get("region") or ""),
        ("Created", short_time(t["created_at"])),
    ]
    if t.get("finished_at"):
        rows.append(("Finished", short_time(t["finished_at"])))
    if t.get("next_attempt_at") and t["state"] == "failed":
        rows.append(("Next attempt", short_time(t["next_attempt_at"])))
    if t.get("sha256"):
        rows.append(("SHA-256", t["sha256"]))
    if t.get("source_sha256") and t["source_sha256"] != t.get("sha256"):
        # An OpenPGP option changed the bytes: what was read differs from what was delivered.
        rows.append(("Source SHA-256", t["source_sha256"]))
    if t.get("error"):
        rows.append(("Error", Text(f"{t['error']['code']}: {t['error']['message']}", style="red")))
    action = t.get("source_action") or {}
    if action.get("state") and action["state"] != "none":
        rows.append(("After delivery", f"{action['state']}" + (f" ({action['error']})" if action.get("error") else "")))
    for name, value in rows:
        facts.add_row(name, value if isinstance(value, Text) else Text(str(value)))
    console.print(facts)
    timeline = t.get("timeline") or []
    if timeline:
        console.print()
        console.print(Text("Timeline", style="bold"))
        grid = Table("TIME", "", "STATE", "ATTEMPT", "REGION", "DETAIL", box=box.SIMPLE_HEAD)
        for event in timeline:
            grid.add_row(
                short_time(event["at"]),
                Text("●", style=STATE_STYLE.get(event["to_state"], "")),
                Text.assemble((event["from_state"] or "·", "dim"), " → ", state_text(event["to_state"])),
                str(event["attempt"]),
                event.get("region") or "",
                Text(event.get("detail") or ""),
            )
        console.print(grid)


def timeline_line(event: dict[str, Any]) -> Text:
    """One timeline event as a line, printed above the progress bar while watching."""
    return Text.assemble(
        (short_time(event["at"]), "dim"),
        "  ",
        (event["from_state"] or "·", "dim"),
        " → ",
        state_text(event["to_state"]),
        (f"  {event['detail']}" if event.get("detail") else "", ""),
    )


# --- the progress bar, from the API's progress fields --------------------------------------


class BytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = f" / {human_bytes(task.total)}" if task.total else ""
        return Text(f"{human_bytes(task.completed)}{total}", style="green")


class ApiRateColumn(ProgressColumn):
    """The rate the API reports (``progress.rate_bytes_per_s``), not a client-side guess."""

    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        return Text(f"{human_bytes(rate)}/s" if rate else "-- /s", style="red")


class EtaColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate")
        if task.finished or not rate or not task.total:
            return Text("ETA --:--" if not task.finished else "", style="cyan")
        seconds = int(max(task.total - task.completed, 0) / rate)
        hours, rest = divmod(seconds, 3600)
        return Text(f"ETA {hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"ETA {rest // 60}:{rest % 60:02d}")


def watch(
    fetch: Callable[[], dict[str, Any]],
    *,
    interval: float,
    sleep: Callable[[float], None],
    show_events: bool = True,
) -> dict[str, Any]:
    """Poll a transfer until it ends, drawing a progress bar (bytes, rate, ETA) on standard
    error and printing each new timeline event above it. Returns the final transfer."""
    console = err()
    seen = 0
    with Progress(
        TextColumn("{task.fields[state]:<10}"),
        BarColumn(),
        BytesColumn(),
        ApiRateColumn(),
        EtaColumn(),
        console=console,
        transient=False,
        refresh_per_second=4,
    ) as bar:
        task = bar.add_task("transfer", total=None, state="", rate=None)
        while True:
            transfer = fetch()
            events = transfer.get("timeline") or []
            if show_events:
                for event in events[seen:]:
                    bar.console.print(timeline_line(event))
            seen = len(events)
            progress = transfer["progress"]
            total = progress.get("bytes_total") or transfer["source"].get("size")
            done = progress.get("bytes_done") or 0
            if transfer["state"] in ("succeeded", "skipped") and total:
                done = total
            bar.update(
                task, total=total, completed=done, state=transfer["state"], rate=progress.get("rate_bytes_per_s")
            )
            if transfer["state"] in TERMINAL:
                bar.refresh()
                return transfer
            sleep(interval)
