"""``manage.py mirror check|drain|restore``: the DynamoDB configuration mirror."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from controlplane import audit, mirror, tenancy


class Command(BaseCommand):
    help = (
        "check: compare the database with the DynamoDB config mirror (exit 1 on drift). "
        "drain: copy pending outbox rows now. "
        "repair: rewrite drifted mirror items from the database. "
        "restore: rebuild tenants and endpoints into an EMPTY database from the mirror and "
        "issue a new API key per tenant (printed once)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["check", "drain", "repair", "restore"])

    def handle(self, *args, action: str, **options) -> None:
        with audit.command(f"mirror {action}"):
            getattr(self, f"_{action}")()

    def _check(self) -> None:
        report = mirror.check()
        for drift in report.drift:
            self.stdout.write(f"DRIFT {drift}")
        if report.pending:
            self.stdout.write(f"{report.pending} outbox rows not yet drained (run `mirror drain`)")
        self.stdout.write(f"checked {report.checked} objects, {len(report.drift)} drifted")
        if report.drift:
            raise CommandError(f"{len(report.drift)} objects differ between the database and the mirror")

    def _drain(self) -> None:
        result = mirror.drain_all()
        self.stdout.write(f"written {result.written}, superseded {result.superseded}, failed {result.failed}")
        if result.failed:
            raise CommandError("some outbox rows could not be written; see the log")

    def _repair(self) -> None:
        report = mirror.check()
        repaired = mirror.repair(report)
        for drift in repaired:
            self.stdout.write(f"REPAIRED {drift}")
        self.stdout.write(f"{len(repaired)} of {len(report.drift)} drifted items rewritten")
        if len(repaired) != len(report.drift):
            raise CommandError("some items changed meanwhile; run `mirror check` again")

    def _restore(self) -> None:
        try:
            result = mirror.restore()
        except mirror.MirrorError as exc:
            raise CommandError(str(exc)) from exc
        for kind, count in result.counts.items():
            self.stdout.write(f"restored {count} {kind}")
        # API keys are not mirrored (only hashes exist anyway): issue new ones, shown once.
        for tenant in result.tenants:
            issued = tenancy.issue_api_key(tenant=tenant, label="issued by mirror restore")
            self.stdout.write(f"tenant {tenant.name} {tenant.id} key {issued.plaintext}")
