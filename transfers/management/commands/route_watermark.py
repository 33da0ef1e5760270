"""``manage.py route_watermark show|set|clear``: the routes' restore watermarks.

``mirror restore`` sets them; polls leave files modified before a route's watermark alone,
because the delivery ledger may have forgotten their delivery (``transfers.watermarks``,
docs/execution.md). An operator lifts one once those files are dealt with (moved away at the
source, or delivered by an ad-hoc transfer), or sets them after restoring the database from
a backup older than the ledger's retention.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from transfers import watermarks
from transfers.models import Route


class Command(BaseCommand):
    help = (
        "show: list routes with a restore watermark. "
        "set: give routes the watermark of a restore now (routes that have one keep it). "
        "clear: lift it; polls take every file again, and files older than the watermark "
        "may be delivered a second time. set and clear need --route (repeatable) or --all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["show", "set", "clear"])
        parser.add_argument("--route", action="append", default=[], metavar="ID", help="a route id (repeatable)")
        parser.add_argument("--all", action="store_true", dest="every", help="every route")

    def handle(self, *args, action: str, route: list[str], every: bool, **options) -> None:
        routes = Route.objects.all()
        if route:
            try:
                routes = routes.filter(id__in=route)
                missing = set(route) - {str(i) for i in routes.values_list("id", flat=True)}
            except ValidationError as exc:
                raise CommandError(f"not a route id: {exc.messages[0]}") from exc
            if missing:
                raise CommandError(f"no such route: {', '.join(sorted(missing))}")
        elif action != "show" and not every:
            raise CommandError(f"{action} needs --route ID or --all")
        if action == "show":
            for r in routes.filter(not_before__isnull=False).order_by("not_before", "id"):
                self.stdout.write(f"{r.id} {r.name} not_before {r.not_before.isoformat()}")
        elif action == "set":
            count = watermarks.set_watermarks(routes, now=timezone.now())
            self.stdout.write(f"{count} routes got a watermark")
        else:
            count = watermarks.clear_watermarks(routes)
            self.stdout.write(f"{count} watermarks cleared")
