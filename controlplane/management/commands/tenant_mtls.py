from django.core.management.base import BaseCommand, CommandError

from controlplane import audit, tenancy
from controlplane.management.lookup import tenant_named
from controlplane.models import ApiKey


class Command(BaseCommand):
    help = (
        "Map a client certificate's subject to a tenant for mutual TLS (FERRY_MTLS_MODE=verify), "
        "or --clear it. The subject as the ALB writes it, e.g. 'CN=acme-batch,O=Acme'."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant", help="name or id")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--subject")
        group.add_argument("--clear", action="store_true", help="no certificate stands for the tenant any more")
        parser.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.READ)

    def handle(self, *args, tenant: str, subject: str | None, clear: bool, scope: str, **options) -> None:
        found = tenant_named(tenant)
        try:
            with audit.command("tenant_mtls"):
                tenancy.set_mtls_subject(tenant=found, subject=None if clear else subject, scope=scope)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if clear:
            self.stdout.write(f"{found.name}: no client certificate any more")
        else:
            self.stdout.write(f"{found.name}: client certificate {found.mtls_subject!r} ({found.mtls_scope})")
