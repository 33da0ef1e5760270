"""Operators' roles on transfers: a viewer may not re-drive, an operator may (controlplane/operators/roles.py)."""

from __future__ import annotations

import pytest

from tests.controlplane.test_operator_roles import as_operator
from transfers.models import Transfer
from transfers.states import State

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead(make_transfer):
    return make_transfer(state=State.DEAD)


def test_a_viewer_reads_but_cannot_redrive(dead):
    client = as_operator("viewer")
    page = client.get(f"/admin/transfers/transfer/{dead.pk}/change/")
    assert page.status_code == 200 and "Re-drive" not in page.content.decode()
    assert client.post(f"/admin/transfers/transfer/{dead.pk}/redrive/").status_code == 403
    listing = client.post(
        "/admin/transfers/transfer/", {"action": "redrive_selected", "_selected_action": [str(dead.pk)]}
    )
    assert listing.status_code in (200, 302)
    assert Transfer.objects.get(pk=dead.pk).state == State.DEAD


def test_an_operator_redrives(dead):
    client = as_operator("operator")
    response = client.post(f"/admin/transfers/transfer/{dead.pk}/redrive/")
    assert response.status_code == 302
    assert Transfer.objects.get(pk=dead.pk).state == State.PENDING
