"""``manage.py audit verify``: walk the audit log's hash chain (docs/audit.md)."""

from django.core.management.base import BaseCommand, CommandError

from controlplane import audit


class Command(BaseCommand):
    help = "Check the audit log: verify walks the hash chain and names the first broken entry (exit 1)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("verify", help="recompute every entry's hash; report the first break")

    def handle(self, *args, action: str, **options) -> None:
        checked, broken = audit.verify()
        if broken is not None:
            raise CommandError(f"audit chain broken at entry {broken.seq}: {broken.reason} ({checked} entries intact)")
        self.stdout.write(f"audit chain intact: {checked} entries")
