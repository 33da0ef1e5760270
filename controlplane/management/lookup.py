"""What the operators' commands share: finding the tenant an argument names."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from controlplane.models import Tenant


def tenant_named(value: str) -> Tenant:
    """The tenant whose name is ``value``, else whose id is; ``CommandError`` for neither."""
    found = Tenant.objects.filter(name=value).first()
    if found is None:
        try:
            found = Tenant.objects.filter(pk=uuid.UUID(value)).first()
        except ValueError:  # not an id either
            found = None
    if found is None:
        raise CommandError(f"no tenant {value!r}")
    return found
