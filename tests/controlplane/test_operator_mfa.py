"""Password logins to the admin need a TOTP code as well (django-otp, docs/identity.md)."""

from __future__ import annotations

import io
import json
import time

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.operators.mfa import current_code
from tests.operators import PASSWORD, code, make_operator

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


def post(data: dict[str, str], *, address: str = "198.51.100.30") -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address, HTTP_USER_AGENT="pytest")
    return client, client.post(LOGIN, data)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def wrong(right: str) -> str:
    return f"{(int(right) + 500_000) % 1_000_000:06d}"


def test_the_right_password_and_code_admit():
    olga = make_operator("olga", role="viewer")
    client, response = post({"username": "olga", "password": PASSWORD, "otp_token": code(olga)})
    assert logged_in(response)
    assert client.get("/admin/").status_code == 200


def test_a_wrong_code_is_refused_even_with_the_right_password():
    olga = make_operator("olga", role="viewer")
    client, response = post({"username": "olga", "password": PASSWORD, "otp_token": wrong(code(olga))})
    assert response.status_code == 200
    assert "Invalid token" in response.content.decode() or "invalid" in response.content.decode().lower()
    assert client.get("/admin/").status_code == 302  # not logged in
    # The wrong code counts as a failed login for the lockout.
    assert AccessAttempt.objects.get(username="olga").failures_since_start == 1


def test_the_password_alone_is_not_enough():
    make_operator("olga", role="viewer")
    client, response = post({"username": "olga", "password": PASSWORD})
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302
    assert 'name="otp_token"' in response.content.decode()


def test_an_operator_without_a_device_cannot_log_in_with_a_password():
    user = get_user_model().objects.create_user("nodevice", password=PASSWORD, is_staff=True)
    assert not TOTPDevice.objects.filter(user=user).exists()
    client, response = post({"username": "nodevice", "password": PASSWORD, "otp_token": "123456"})
    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_a_code_is_accepted_once():
    olga = make_operator("olga", role="viewer")
    device = TOTPDevice.objects.get(user=olga)
    now = time.time()
    token = current_code(device, at=now)
    assert logged_in(post({"username": "olga", "password": PASSWORD, "otp_token": token})[1])
    # Replayed within its 30 seconds (someone watched it typed): refused.
    assert post({"username": "olga", "password": PASSWORD, "otp_token": token})[1].status_code == 200


def test_guessing_codes_locks_the_operator_out_like_guessing_passwords():
    olga = make_operator("olga", role="viewer")
    for n in range(1, 6):
        _, response = post(
            {"username": "olga", "password": PASSWORD, "otp_token": wrong(current_code(olga.totpdevice_set.get()))}
        )
        assert response.status_code == (429 if n == 5 else 200), n
    _, response = post({"username": "olga", "password": PASSWORD, "otp_token": code(olga)})
    assert response.status_code == 429


def test_the_login_page_offers_sso_only_when_configured(settings):
    page = Client().get(LOGIN).content.decode()
    assert 'name="otp_token"' in page and "single sign-on" not in page
    assert Client().get("/admin/sso/login/").status_code == 404
    settings.FERRY_OIDC_ENABLED = True
    assert "Log in with single sign-on" in Client().get(LOGIN).content.decode()


def test_the_local_stacks_admin_logs_in_with_the_code_totp_code_prints(moto, settings):
    """`make run`'s banner: seed_demo's admin, its password and `manage.py totp_code`."""
    out = io.StringIO()
    call_command("seed_demo", "--bucket", "ferry-demo-mfa-test", stdout=out)
    seed = json.loads(out.getvalue().strip().splitlines()[-1])
    assert seed["admin_totp_uri"].startswith("otpauth://totp/Ferry%3Aadmin?secret=")
    printed = io.StringIO()
    call_command("totp_code", seed["admin_user"], stdout=printed)
    token = printed.getvalue().strip()
    assert len(token) == 6 and token.isdigit()
    _, response = post({"username": "admin", "password": seed["admin_password"], "otp_token": token})
    assert logged_in(response)
    # Seeded again (the next `make run`): the same device, so an authenticator app keeps working.
    again = io.StringIO()
    call_command("seed_demo", "--bucket", "ferry-demo-mfa-test", stdout=again)
    assert json.loads(again.getvalue().strip().splitlines()[-1])["admin_totp_uri"] == seed["admin_totp_uri"]


def test_totp_code_refuses_outside_the_local_and_test_profiles(settings):
    make_operator("olga", role="viewer")
    settings.FERRY_PROFILE = "production"
    with pytest.raises(CommandError, match="only runs in the local and test profiles"):
        call_command("totp_code", "olga")


def test_enroll_totp_replaces_the_device_and_prints_its_uri():
    olga = make_operator("olga", role="viewer")
    old = TOTPDevice.objects.get(user=olga)
    out = io.StringIO()
    call_command("enroll_totp", "olga", stdout=out, stderr=io.StringIO())
    new = TOTPDevice.objects.get(user=olga)
    assert new.pk != old.pk and out.getvalue().strip() == new.config_url
    # The old phone's codes no longer work.
    _, response = post({"username": "olga", "password": PASSWORD, "otp_token": current_code(old)})
    assert response.status_code == 200
