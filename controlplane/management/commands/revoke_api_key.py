from django.core.management.base import BaseCommand, CommandError

from controlplane import audit, tenancy


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the part after 'fry_')."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, prefix: str, **options) -> None:
        with audit.command("revoke_api_key"):
            revoked = tenancy.revoke_api_key(prefix=prefix)
        if not revoked:
            raise CommandError(f"no active key with prefix {prefix!r}")
        self.stdout.write(f"revoked {prefix}")
