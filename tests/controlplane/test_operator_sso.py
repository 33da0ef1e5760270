"""Operators' SSO: the OpenID Connect login flow against a small provider the test starts
(tests/oidc_provider.py), the groups claim mapped to roles, bad tokens refused."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import requests
from axes.models import AccessAttempt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.test import Client

from controlplane.operators import sso as sso_module
from controlplane.operators.sso import roles_from_claims, username_for
from tests.oidc_provider import Provider, Running
from tests.operators import make_operator

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    with Running() as provider:
        yield provider


@pytest.fixture
def sso(idp, settings) -> Provider:
    for name, value in idp.settings().items():
        setattr(settings, name, value)
    idp.sign_with, idp.audience = None, "ferry-admin"
    sso_module._discovered.clear()
    return idp


def sso_flow(client: Client):
    """Run the authorization-code flow: Ferry → IdP → Ferry's callback; Ferry's last answer."""
    start = client.get("/admin/sso/login/?next=/admin/")
    assert start.status_code == 302
    authorize = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert authorize.status_code == 302, authorize.text
    callback = urlparse(authorize.headers["Location"])
    assert callback.path == "/admin/sso/callback/"
    return client.get(f"{callback.path}?{callback.query}")


def sso_login(client: Client) -> str:
    """The flow, answered with a redirect: where Ferry sends the browser."""
    done = sso_flow(client)
    assert done.status_code == 302
    return done["Location"]


def test_an_operator_group_logs_in_with_the_operator_role_and_no_totp(sso):
    sso.login_as("u-1001", groups=["ops-run", "unrelated"], email="ana@example.com", given_name="Ana")
    client = Client()
    assert sso_login(client) == "/admin/"
    assert client.get("/admin/").status_code == 200  # no TOTP asked: the IdP did the MFA
    user = get_user_model().objects.get(username=username_for("u-1001"))
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert [g.name for g in user.groups.all()] == ["operator"]
    assert user.has_perm("transfers.redrive_transfer") and not user.has_perm("controlplane.change_apikey")


def test_losing_the_group_at_the_idp_loses_access_at_the_next_login(sso):
    sso.login_as("u-1002", groups=["ops-admin"])
    assert sso_login(Client()) == "/admin/"
    sso.login_as("u-1002", groups=["somewhere-else"])
    client = Client()
    assert sso_login(client).startswith("/admin/login/?sso=failed")
    assert client.get("/admin/").status_code == 302
    user = get_user_model().objects.get(username=username_for("u-1002"))
    assert not user.is_staff and not user.groups.exists()


def test_a_token_signed_with_another_key_is_refused(sso):
    sso.login_as("u-1003", groups=["ops-admin"])
    sso.sign_with = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = Client()
    assert sso_login(client).startswith("/admin/login/?sso=failed")
    assert client.get("/admin/").status_code == 302
    assert not get_user_model().objects.filter(username=username_for("u-1003")).exists()
    assert AccessAttempt.objects.filter(username__isnull=True).count() == 1  # axes counted it


def test_a_token_for_another_audience_is_refused(sso):
    sso.login_as("u-1004", groups=["ops-admin"])
    sso.audience = "some-other-app"
    client = Client()
    assert sso_login(client).startswith("/admin/login/?sso=failed")
    assert not get_user_model().objects.filter(username=username_for("u-1004")).exists()


def test_an_idp_account_with_a_password_operators_email_is_not_that_operator(sso):
    olga = make_operator("olga", role="admin")
    sso.login_as("u-1005", groups=["ops-read"], email=olga.email)
    client = Client()
    assert sso_login(client) == "/admin/"
    assert client.get("/admin/").wsgi_request.user.username == username_for("u-1005")
    olga.refresh_from_db()
    assert [g.name for g in olga.groups.all()] == ["admin"]


def test_sso_sessions_end_when_sso_is_switched_off(sso, settings):
    sso.login_as("u-1006", groups=["ops-read"])
    client = Client()
    sso_login(client)
    settings.FERRY_OIDC_ENABLED = False
    assert client.get("/admin/").status_code == 302


def test_roles_from_claims():
    mapping = {"a": "viewer", "b": "admin", "c": "superuser"}
    assert roles_from_claims({"groups": ["a", "b", "x"]}, claim="groups", mapping=mapping) == {"viewer", "admin"}
    assert roles_from_claims({"groups": "a"}, claim="groups", mapping=mapping) == {"viewer"}
    assert roles_from_claims({"groups": ["c"]}, claim="groups", mapping=mapping) == set()  # not a role
    assert roles_from_claims({}, claim="groups", mapping=mapping) == set()
    assert roles_from_claims({"groups": 7}, claim="groups", mapping=mapping) == set()


def test_repeated_refused_callbacks_from_one_address_lock_its_sso_logins(sso):
    sso.login_as("u-1007", groups=["ops-admin"])
    sso.audience = "some-other-app"
    for n in range(1, 6):
        assert sso_flow(Client()).status_code == (429 if n == 5 else 302), n  # 429: axes' lockout page
    sso.audience = "ferry-admin"
    assert sso_flow(Client()).status_code == 429  # even a good token, from this address
    assert not get_user_model().objects.filter(username=username_for("u-1007")).exists()


def test_with_only_the_issuer_configured_the_endpoints_are_discovered(sso, settings):
    for name in ("OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT"):
        setattr(settings, name, "")
    settings.OIDC_OP_JWKS_ENDPOINT = ""
    sso.login_as("u-1008", groups=["ops-read"])
    client = Client()
    assert sso_login(client) == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_discovery_document_of_another_issuer_is_refused(sso, settings):
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = ""
    # The document is found (the slash is dropped to find it) but names its issuer without it.
    settings.FERRY_OIDC_ISSUER = sso.issuer + "/"
    with pytest.raises(sso_module.DiscoveryFailed, match="its issuer is not"):
        sso_module.discover(settings.FERRY_OIDC_ISSUER)
    response = Client().get("/admin/sso/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?sso=failed")


def test_usernames_are_valid_django_usernames():
    from django.contrib.auth.validators import UnicodeUsernameValidator

    for subject in ("00u1abcd", "248289761001", "a b/c:d", "x" * 200):
        name = username_for(subject)
        UnicodeUsernameValidator()(name)
        assert name.startswith("sso.") and len(name) <= 150
    assert username_for("00u1abcd") == "sso.00u1abcd"
    assert username_for("a b") != username_for("a_b")


def test_a_garbage_id_token_is_a_failed_login_not_an_error(sso):
    sso.login_as("u-1009", groups=["ops-admin"])
    original = sso.token

    def garbage(form):
        status, body = original(form)
        return status, {**body, "id_token": "not.a.jwt"}

    sso.token = garbage
    try:
        assert sso_login(Client()).startswith("/admin/login/?sso=failed")
    finally:
        sso.token = original
