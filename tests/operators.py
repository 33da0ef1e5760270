"""Operators for admin tests: a user with a role and a TOTP device, and the code it shows now."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.operators.mfa import current_code, enroll

PASSWORD = "correct horse battery staple"


def make_operator(username: str, *, role: str | None = "admin", superuser: bool = False, password: str = PASSWORD):
    """A staff user with ``role`` (a group made by the roles migration step) and one TOTP device."""
    User = get_user_model()
    if superuser:
        user = User.objects.create_superuser(username, f"{username}@example.com", password)
    else:
        user = User.objects.create_user(username, f"{username}@example.com", password, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    enroll(user)
    return user


def code(user) -> str:
    """The code ``user``'s authenticator shows now, usable again: django-otp refuses a code
    whose time step was used already (replay), and tests log in several times a step."""
    device = TOTPDevice.objects.get(user=user)
    TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1, throttling_failure_count=0)
    return current_code(device)


def verified_login(client, user) -> None:
    """``client.force_login(user)`` as after a password + TOTP login (the admin wants both)."""
    from django_otp import DEVICE_ID_SESSION_KEY

    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user).first() or enroll(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
