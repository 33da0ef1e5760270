"""The SSRF guard's policy as pure functions, and at the API with the guard on."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import override_settings

from endpoints import netguard
from endpoints.models import Endpoint
from tests.endpoints.conftest import post, sftp_body

LOOPBACK = netguard.parse_networks(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "169.254.169.254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.0.8",
        "198.18.0.1",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
    ],
)
def test_forbidden_addresses_are_refused(address):
    with pytest.raises(netguard.Refused):
        netguard.check_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert netguard.check_address(address) == ipaddress.ip_address(address)


def test_allow_list_opens_only_its_ranges():
    assert str(netguard.check_address("127.0.0.1", allow=LOOPBACK)) == "127.0.0.1"
    assert str(netguard.check_address("::1", allow=LOOPBACK)) == "::1"
    assert netguard.check_address("::ffff:127.0.0.1", allow=LOOPBACK)
    for address in ("169.254.169.254", "10.0.0.1", "::ffff:10.0.0.1"):
        with pytest.raises(netguard.Refused):
            netguard.check_address(address, allow=LOOPBACK)


def test_hostname_resolving_to_loopback_is_refused_unless_allowed():
    with pytest.raises(netguard.Refused, match="localhost resolves to"):
        netguard.guard("localhost", 22)
    checked = netguard.guard("localhost", 22, allow=LOOPBACK)
    assert checked.address in checked.addresses
    assert set(checked.addresses) <= {"127.0.0.1", "::1"}


def test_ports_and_unresolvable_names():
    with pytest.raises(netguard.Refused, match="not allowed"):
        netguard.guard("127.0.0.1", 2222, allow=LOOPBACK, allowed_ports={22})
    assert netguard.guard("127.0.0.1", 22, allow=LOOPBACK, allowed_ports={22}).address == "127.0.0.1"
    with pytest.raises(netguard.Unresolvable):
        netguard.guard("no-such-host.invalid", 22)
    with pytest.raises(netguard.Refused):
        netguard.check_port(0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("host", "guard_on"),
    [
        ("127.0.0.1", True),
        ("169.254.169.254", False),
        ("10.0.0.1", False),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
    ],
)
def test_api_refuses_ssrf_hosts(api, moto, sshd, secret_names, host, guard_on):
    before = secret_names()
    settings = {"FERRY_NETGUARD_ALLOW": []} if guard_on else {}
    with override_settings(**settings):
        response = post(api, "/endpoints", sftp_body(sshd, host=host))
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == ["config.host"]
    assert not Endpoint.objects.exists()
    assert secret_names() == before


@pytest.mark.django_db
def test_api_limits_sftp_ports(api, moto, sshd):
    with override_settings(FERRY_SFTP_ALLOWED_PORTS=["22"]):
        response = post(api, "/endpoints", sftp_body(sshd))
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["config.port"]
