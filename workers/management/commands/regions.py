"""``manage.py regions status|drain R|failover --from R1 --to R2|restore R``."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from controlplane import audit
from workers import context
from workers.admin import lease_rows
from workers.regions import RegionState


class Command(BaseCommand):
    help = "Show and steer regions: status, drain, failover, restore."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="partitions with owner, fence, expiry; region states")
        drain = sub.add_parser("drain", help="stop a region taking work; hand its partitions over once idle")
        drain.add_argument("region")
        failover = sub.add_parser("failover", help="move a region's partitions to another at once")
        failover.add_argument("--from", dest="source", required=True)
        failover.add_argument("--to", dest="target", required=True)
        restore = sub.add_parser("restore", help="bring a region's partitions home")
        restore.add_argument("region")

    def _check(self, *names: str) -> None:
        for name in names:
            if name not in settings.FERRY_REGIONS:
                raise CommandError(f"unknown region {name!r}; regions are {', '.join(settings.FERRY_REGIONS)}")

    def handle(self, *args, action: str, **options) -> None:
        table = context.region_table()
        if action == "drain":
            self._check(options["region"])
            self._set(table, options["region"], RegionState.DRAINING, action=action)
            self.stdout.write(f"{options['region']}: draining (partitions move once in-flight transfers finish)")
        elif action == "failover":
            self._check(options["source"], options["target"])
            if options["source"] == options["target"]:
                raise CommandError("--from and --to must differ")
            self._set(table, options["source"], RegionState.FAILED_OVER, action=action, moved_to=options["target"])
            self.stdout.write(f"{options['source']}: failed over to {options['target']}")
        elif action == "restore":
            self._check(options["region"])
            self._set(table, options["region"], RegionState.ACTIVE, action=action)
            self.stdout.write(f"{options['region']}: active (its partitions come home as the other region hands over)")
        self._status()

    def _set(self, table, name: str, state: RegionState, *, action: str, moved_to: str = "") -> None:
        """Change the region's state and audit it. The state lives in DynamoDB, so the entry
        is written just after (not in one transaction with it): a failed write is not audited."""
        current = table.all([name]).get(name)
        before = {"state": str(current.state), "moved_to": current.moved_to} if current else None
        table.set_state(name, state, moved_to=moved_to)
        with audit.command(f"regions {action}"):
            audit.record(
                action=f"region.{action}",
                object_kind="region",
                object_id=name,
                before=before,
                after={"state": str(state), "moved_to": moved_to},
            )

    def _status(self) -> None:
        regions, partitions = lease_rows()
        self.stdout.write("\nregion       state        moved_to     last seen    partitions held")
        for r in regions:
            seen = f"{r['last_seen']}s ago" if r["last_seen"] is not None else "never"
            self.stdout.write(f"{r['name']:<12} {r['state']:<12} {r['moved_to'] or '-':<12} {seen:<12} {r['held']}")
        self.stdout.write("\npartition  home         owner        fence  expires in  should be")
        for p in partitions:
            expires = f"{p['expires_in']}s" if p["expires_in"] is not None else "-"
            fence = p["fence"] if p["fence"] is not None else "-"
            self.stdout.write(
                f"{p['partition']:<10} {p['home']:<12} {p['owner'] or '-':<12} {fence!s:<6} {expires:<11} "
                f"{p['should_be'] or '-'}"
            )
