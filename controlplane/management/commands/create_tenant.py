from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from controlplane import audit, tenancy


class Command(BaseCommand):
    help = "Create a tenant (a customer account)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")

    def handle(self, *args, name: str, **options) -> None:
        try:
            with audit.command("create_tenant"):
                tenant = tenancy.create_tenant(name=name)
        except IntegrityError as exc:
            raise CommandError(f"a tenant named {name!r} already exists") from exc
        self.stdout.write(f"tenant {tenant.name} {tenant.id}")
