"""The operators' fleet overview: the page, its figures and its charts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.operators import verified_login
from transfers.models import Transfer
from transfers.states import State
from workers import overview

pytestmark = pytest.mark.django_db


def operator() -> Client:
    user = User.objects.create_superuser(username="ops", password="x")
    client = Client()
    verified_login(client, user)  # password + TOTP
    return client


def test_the_figures_count_states_bytes_dead_codes_and_the_oldest_pending(make_transfer):
    now = timezone.now()
    for _ in range(3):
        make_transfer(state=State.SUCCEEDED, region="us-west-2", bytes_total=1000, finished_at=now)
    make_transfer(state=State.SUCCEEDED, region="us-east-1", bytes_total=5, finished_at=now)
    dead = make_transfer(state=State.DEAD, last_error_code="auth_failed")
    make_transfer(state=State.DEAD, last_error_code="auth_failed", tenant=dead.tenant)
    old_pending = make_transfer(state=State.PENDING)
    Transfer.objects.filter(pk=old_pending.pk).update(created_at=now - timedelta(hours=30))
    make_transfer(state=State.PENDING)

    data = overview.fleet_overview(now)
    assert data.totals == {State.SUCCEEDED: 4, State.DEAD: 2, State.PENDING: 1}  # the 30 h old one is outside
    assert sum(data.per_hour[data.hours[-1]].values()) == 7
    assert data.bytes_by_region == {"us-west-2": 3000, "us-east-1": 5}
    assert data.dead_by_tenant_and_code == [{"tenant": dead.tenant.name, "code": "auth_failed", "count": 2}]
    assert data.oldest_pending.pk == old_pending.pk
    assert data.unfinished == 2


def test_the_page_is_linked_from_the_index_and_draws_its_charts(make_transfer, moto):
    make_transfer(state=State.SUCCEEDED, region="us-east-1", bytes_total=42, finished_at=timezone.now())
    client = operator()
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:overview") in index and "Fleet overview" in index
    page = client.get(reverse("admin:overview"))
    assert page.status_code == 200
    body = page.content.decode()
    charts = re.findall(r'<svg [^>]*role="img".*?</svg>', body, re.S)
    assert len(charts) == 2 and not any("<script" in chart for chart in charts)
    assert "42 B" in charts[1]
    assert "Partitions" in body and "us-east-1" in body
    assert "http://" not in body.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_the_page_is_for_staff_only():
    response = Client().get(reverse("admin:overview"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_charts_escape_their_labels_and_scale_to_the_peak():
    svg = overview.stacked_bars_svg(
        ["<b>", "2h"], [{"dead": 2}, {"dead": 4, "succeeded": 4}], {"succeeded": "#0", "dead": "#1"}
    )
    assert "<b>" not in svg.replace("<svg", "").split(">", 1)[1] or "&lt;b&gt;" in svg
    assert "&lt;b&gt;" in svg
    assert ">8</text>" in svg  # the peak stack
    bars = overview.hbars_svg({"a&b": 10, "c": 5}, unit=" B")
    assert "a&amp;b" in bars and "10 B" in bars
    assert overview.hbars_svg({}).startswith("<svg")
