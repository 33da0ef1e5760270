"""Operators' admin logins are throttled and locked out (django-axes, docs/identity.md).

Password logins need a TOTP code too (tests/controlplane/test_operator_mfa.py); here every
login gives the right one, so what is counted is the password.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessLog
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from tests.operators import PASSWORD, code, make_operator

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def operator():
    return make_operator("olga", superuser=True)


def login(username: str, password: str, *, address: str = "198.51.100.20", **headers: str):
    client = Client(REMOTE_ADDR=address, HTTP_USER_AGENT="pytest", **headers)
    user = get_user_model().objects.filter(username=username).first()
    token = code(user) if user is not None else "123456"
    return client, client.post(LOGIN, {"username": username, "password": password, "otp_token": token})


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def fail(times: int, username: str = "olga", **kwargs) -> None:
    """``times`` wrong passwords: the login form again, until the 5th failure locks (429)."""
    for n in range(1, times + 1):
        _, response = login(username, "wrong", **kwargs)
        assert response.status_code == (429 if n >= 5 else 200), n


def test_five_wrong_passwords_lock_the_operator_out_even_with_the_right_one(operator):
    fail(5)
    client, response = login("olga", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Login locked" in page and "olga" in page and "axes_reset_username" in page
    assert client.get("/admin/").status_code == 302  # no session: back to the login page
    assert AccessAttempt.objects.get(username="olga").failures_since_start >= 5


def test_four_wrong_then_the_right_one_logs_in_and_resets_the_count(operator):
    fail(4)
    _, response = login("olga", PASSWORD)
    assert logged_in(response)
    assert not AccessAttempt.objects.filter(username="olga").exists()
    fail(4)
    assert logged_in(login("olga", PASSWORD)[1])
    assert AccessLog.objects.filter(username="olga").count() == 2


def test_the_lock_is_per_username_and_address(operator):
    make_operator("pat", superuser=True)
    fail(5)
    assert login("olga", PASSWORD)[1].status_code == 429
    assert logged_in(login("pat", PASSWORD)[1])  # another operator at the same address
    assert logged_in(login("olga", PASSWORD, address="192.0.2.44")[1])  # olga elsewhere


def test_behind_the_alb_a_client_cannot_dodge_the_lock_with_its_own_forwarded_for(operator, settings):
    settings.FERRY_TRUSTED_PROXY_HOPS = 1
    for n in range(5):
        _, response = login("olga", "wrong", address="10.0.0.5", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}, 203.0.113.9")
        assert response.status_code == (429 if n == 4 else 200)
    _, response = login("olga", PASSWORD, address="10.0.0.6", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.9")
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.9"}


def test_after_the_cool_off_the_right_password_works_again(operator, settings):
    # Locked with a long cool-off (a loaded machine's slow requests must not let the first
    # failures expire before the fifth), then the cool-off shortened: axes reads it at each check.
    fail(5)
    assert login("olga", PASSWORD)[1].status_code == 429
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    time.sleep(1.5)
    assert logged_in(login("olga", PASSWORD)[1])


def test_api_keys_are_never_counted_or_locked(make_tenant, operator):
    _, key = make_tenant()
    prefix = key.split("_")[1]
    for _ in range(10):
        client = APIClient(REMOTE_ADDR="198.51.100.20")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer fry_{prefix}_{'x' * 32}")
        assert client.get("/api/v1/tenant").status_code == 401
    assert not AccessAttempt.objects.exists()
    client = APIClient(REMOTE_ADDR="198.51.100.20")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/tenant").status_code == 200
    assert logged_in(login("olga", PASSWORD)[1])


def test_the_admin_shows_login_attempts_read_only(operator):
    fail(2, username="mallory")
    client, response = login("olga", PASSWORD)
    assert logged_in(response)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    assert "mallory" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="mallory")
    assert "wrong" not in attempt.post_data  # the password is masked
    assert client.get("/admin/axes/accessattempt/add/").status_code == 403
    detail = client.get(f"/admin/axes/accessattempt/{attempt.pk}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AccessAttempt.objects.filter(pk=attempt.pk).exists()
    assert client.get("/admin/axes/accesslog/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_lockout_works_on_a_write_forwarded_connection(forwarded_connection):
    """The secondary region's API: axes' writes must pass the write-forwarding guard."""
    make_operator("olga", superuser=True)
    fail(5)
    assert login("olga", PASSWORD)[1].status_code == 429
    assert logged_in(login("olga", PASSWORD, address="192.0.2.44")[1])
