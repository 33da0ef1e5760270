"""Fixtures of the notifications tests: the HTTPS receiver, trusted by the test profile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from tests.notifications import receiver as receiver_module
from tests.transfers.conftest import make_endpoint, make_route, make_transfer  # noqa: F401 - shared factories


@pytest.fixture(scope="session")
def webhook_server(tmp_path_factory) -> Iterator[receiver_module.Receiver]:
    server = receiver_module.start(tmp_path_factory.mktemp("webhooks"))
    yield server
    server.stop()


@pytest.fixture
def receiver(webhook_server) -> Iterator[receiver_module.Receiver]:
    """The receiver, emptied, answering 204; this process trusts its CA."""
    webhook_server.reset()
    with override_settings(FERRY_WEBHOOK_CA_BUNDLE=str(webhook_server.ca_path)):
        yield webhook_server
    webhook_server.reset()
