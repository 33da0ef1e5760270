from django.core.management.base import BaseCommand, CommandError

from controlplane import tenancy


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the part after 'fry_')."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, prefix: str, **options) -> None:
        if not tenancy.revoke_api_key(prefix=prefix):
            raise CommandError(f"no active key with prefix {prefix!r}")
        self.stdout.write(f"revoked {prefix}")
