"""``manage.py regions status|drain R|failover --from R1 --to R2|restore R``."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workers import context
from workers.regions import RegionState, desired_owner, home_region


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
            table.set_state(options["region"], RegionState.DRAINING)
            self.stdout.write(f"{options['region']}: draining (partitions move once in-flight transfers finish)")
        elif action == "failover":
            self._check(options["source"], options["target"])
            if options["source"] == options["target"]:
                raise CommandError("--from and --to must differ")
            table.set_state(options["source"], RegionState.FAILED_OVER, moved_to=options["target"])
            self.stdout.write(f"{options['source']}: failed over to {options['target']}")
        elif action == "restore":
            self._check(options["region"])
            table.set_state(options["region"], RegionState.ACTIVE)
            self.stdout.write(f"{options['region']}: active (its partitions come home as the other region hands over)")
        self._status()

    def _status(self) -> None:
        regions = list(settings.FERRY_REGIONS)
        states = context.region_table().all(regions)
        leases = context.lease_table().all()
        now = time.time()
        silence = settings.FERRY_LEASE_TTL + settings.FERRY_LEASE_GRACE
        self.stdout.write("\nregion       state        moved_to     last seen   partitions held")
        for name in regions:
            region = states.get(name)
            held = sum(1 for lease in leases.values() if lease.owner_region == name and lease.live(now))
            seen = f"{now - region.last_seen:6.1f}s ago" if region and region.last_seen else "never"
            self.stdout.write(
                f"{name:<12} {(region.state if region else 'active'):<12} {(region.moved_to if region else ''):<12} "
                f"{seen:<11} {held}"
            )
        self.stdout.write("\npartition  home         owner        fence  expires in  should be")
        for partition in range(settings.FERRY_PARTITIONS):
            lease = leases.get(partition)
            want = desired_owner(
                partition,
                regions=regions,
                states=states,
                now=now,
                silence=silence,
                auto_takeover=settings.FERRY_AUTO_TAKEOVER,
            )
            if lease is None:
                owner, fence, expires = "-", "-", "-"
            else:
                owner = lease.owner_region if lease.live(now) else f"({lease.owner_region or 'released'})"
                fence, expires = str(lease.fence), f"{lease.expires_at - now:8.1f}s" if lease.live(now) else "expired"
            home = home_region(partition, regions)
            self.stdout.write(f"{partition:<10} {home:<12} {owner:<12} {fence:<6} {expires:<11} {want or '-'}")
