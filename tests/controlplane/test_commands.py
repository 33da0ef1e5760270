"""Operator commands for tenants and keys."""

import pytest
from django.core.management import CommandError, call_command

from controlplane.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db


def test_create_tenant_and_key_print_the_key_once(capsys):
    call_command("create_tenant", "globex")
    assert Tenant.objects.filter(name="globex").exists()
    call_command("create_api_key", "globex", "--scope", "read")
    out = capsys.readouterr().out.strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert out.startswith(f"fry_{key.prefix}_")
    assert key.scope == "read"
    call_command("revoke_api_key", key.prefix)
    key.refresh_from_db()
    assert key.revoked_at is not None
    with pytest.raises(CommandError):
        call_command("revoke_api_key", key.prefix)


def test_duplicate_tenant_and_unknown_tenant_are_clear_errors():
    call_command("create_tenant", "initech")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "initech")
    with pytest.raises(CommandError, match="no tenant"):
        call_command("create_api_key", "nobody")
