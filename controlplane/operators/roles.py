"""Operators' roles: three Django groups with the permissions each may use.

- **viewer** reads every admin page (the ``view_*`` permissions of Ferry's apps, the login
  attempts and the TOTP devices' list);
- **operator** also re-drives and cancels transfers;
- **admin** also manages tenants and API keys (revokes keys) and operators' TOTP devices.

``ensure_roles()`` makes the groups match this module after every ``migrate`` (and after a
test database's flush), so a permission added here reaches the groups with the next
deployment. Roles are the only grant operators get: nobody needs ``is_superuser``; SSO
logins get exactly the roles of their IdP groups (controlplane/operators/sso.py).
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.contrib.auth.models import Group, Permission

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

# Apps whose every model the viewer may read in the admin.
_READ_APPS = ("controlplane", "endpoints", "transfers", "workers", "axes", "otp_totp")

_OPERATOR_EXTRA = ("transfers.redrive_transfer", "transfers.cancel_transfer")
_ADMIN_EXTRA = (
    "controlplane.add_tenant",
    "controlplane.change_tenant",
    "controlplane.change_apikey",  # revoke
    "otp_totp.add_totpdevice",
    "otp_totp.change_totpdevice",
    "otp_totp.delete_totpdevice",
    "auth.view_user",
)


def _by_name(names: tuple[str, ...]) -> list[Permission]:
    wanted = {tuple(name.split(".", 1)) for name in names}
    found = Permission.objects.filter(content_type__app_label__in={a for a, _ in wanted}).select_related("content_type")
    return [p for p in found if (p.content_type.app_label, p.codename) in wanted]


def permissions_of(role: str) -> list[Permission]:
    """The permissions ``role`` grants (each role has those of the ones before it)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    granted = list(Permission.objects.filter(content_type__app_label__in=_READ_APPS, codename__startswith="view_"))
    if role in (OPERATOR, ADMIN):
        granted += _by_name(_OPERATOR_EXTRA)
    if role == ADMIN:
        granted += _by_name(_ADMIN_EXTRA)
    return granted


def ensure_roles() -> None:
    """Create the three groups, or bring their permissions back to what this module says."""
    for role in ROLES:
        group = Group.objects.filter(name=role).first() or Group.objects.create(name=role)
        group.permissions.set(permissions_of(role))


def on_post_migrate(sender: AppConfig, **kwargs: Any) -> None:
    """post_migrate runs once per app; the groups are made after the last app's permissions."""
    if sender.label == list(apps.get_app_configs())[-1].label:
        ensure_roles()
