"""The admin's password login asks for a TOTP code as well (django-otp).

django-otp's admin form makes the operator pick a device in a second round trip; an
operator with one confirmed TOTP device (the usual case) types password and code at once.
A wrong or throttled code after the right password counts as a failed login for
django-axes, so guessing codes locks the username and address out like guessing passwords.
"""

from __future__ import annotations

import time

from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


class TotpAdminLoginForm(OTPAdminAuthenticationForm):
    def _chosen_device(self, user):
        device = super()._chosen_device(user)
        if device is None:
            # Only this user's confirmed devices: the choice the stock form makes the user make.
            devices = list(devices_for_user(user, confirmed=True))
            if len(devices) == 1:
                device = devices[0]
        return device

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            if self.user_cache is not None and self.cleaned_data.get("otp_token"):
                # The password was right, the code was not (or is throttled). Sent here, outside
                # django-otp's transaction: axes' handler must not run in a nested (savepoint)
                # transaction, which write forwarding refuses.
                user_login_failed.send(
                    sender=__name__,
                    credentials={"username": self.cleaned_data.get("username")},
                    request=self.request,
                )
            raise


def current_code(device: TOTPDevice, *, at: float | None = None) -> str:
    """The code ``device`` shows at ``at`` (now), as an authenticator app would."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() if at is None else at
    return f"{totp.token():0{device.digits}d}"


def enroll(user, *, name: str = "authenticator") -> TOTPDevice:
    """Give ``user`` a confirmed TOTP device; replaces the ones they had (a lost phone)."""
    TOTPDevice.objects.filter(user=user).delete()
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True)


def device_of(user) -> TOTPDevice | None:
    """``user``'s confirmed TOTP device, if it has one."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
