from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from controlplane import audit, tenancy
from controlplane.errors import FerryError
from controlplane.management.lookup import tenant_named
from controlplane.models import ApiKey


class Command(BaseCommand):
    help = (
        "Issue an API key for a tenant (by name or id) and print it once. It expires after "
        "FERRY_API_KEY_MAX_DAYS unless --expires-in-days asks for sooner."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant")
        parser.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.WRITE)
        parser.add_argument("--label", default="")
        parser.add_argument(
            "--expires-in-days", type=float, default=None, help="expire sooner than the deployment's maximum"
        )

    def handle(self, *args, tenant: str, scope: str, label: str, expires_in_days: float | None, **options) -> None:
        found = tenant_named(tenant)
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
        try:
            with audit.command("create_api_key"):
                issued = tenancy.issue_api_key(tenant=found, scope=scope, label=label, expires_at=expires_at)
        except FerryError as error:
            raise CommandError(error.message) from error
        expiry = issued.api_key.expires_at.isoformat() if issued.api_key.expires_at else "never"
        self.stderr.write(
            f"key {issued.api_key.prefix} ({scope}) for {found.name}, expires {expiry}; it is shown only now:"
        )
        self.stdout.write(issued.plaintext)
