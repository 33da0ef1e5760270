from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from controlplane.operators import mfa


class Command(BaseCommand):
    help = (
        "Print the TOTP code a local operator's device shows now (the local and test profiles only: "
        "`make run` needs no phone). Each code admits one login."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", nargs="?", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        if settings.FERRY_PROFILE not in {"local", "test"}:
            # Anywhere else the code must come from the operator's own device.
            raise CommandError("totp_code only runs in the local and test profiles")
        user = get_user_model().objects.filter(username=username).first()
        device = mfa.device_of(user) if user is not None else None
        if device is None:
            raise CommandError(f"{username!r} has no TOTP device (manage.py enroll_totp {username})")
        self.stdout.write(mfa.current_code(device))
