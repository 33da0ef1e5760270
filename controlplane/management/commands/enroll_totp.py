from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from controlplane.operators import mfa


class Command(BaseCommand):
    help = (
        "Give a password operator a new TOTP device (replacing any other: a lost phone) and print "
        "its otpauth:// URI once, for an authenticator app. The admin asks for its code after the password."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")

    def handle(self, *args, username: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if not user.has_usable_password():
            raise CommandError(f"{username} logs in through SSO; the identity provider does its second factor")
        device = mfa.enroll(user)
        self.stderr.write(f"TOTP device for {username}; the URI holds its secret and is shown only now:")
        self.stdout.write(device.config_url)
