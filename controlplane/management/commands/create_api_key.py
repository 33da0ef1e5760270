from django.core.management.base import BaseCommand, CommandError

from controlplane import tenancy
from controlplane.models import ApiKey, Tenant


class Command(BaseCommand):
    help = "Issue an API key for a tenant (by name or id) and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant")
        parser.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.WRITE)
        parser.add_argument("--label", default="")

    def handle(self, *args, tenant: str, scope: str, label: str, **options) -> None:
        found = Tenant.objects.filter(name=tenant).first()
        if found is None:
            try:
                found = Tenant.objects.filter(pk=tenant).first()
            except Exception:  # not a UUID
                found = None
        if found is None:
            raise CommandError(f"no tenant {tenant!r}")
        issued = tenancy.issue_api_key(tenant=found, scope=scope, label=label)
        self.stderr.write(f"key {issued.api_key.prefix} ({scope}) for {found.name}; it is shown only now:")
        self.stdout.write(issued.plaintext)
