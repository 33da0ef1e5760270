"""GET /api/v1/network: egress addresses per region and the SSH policy the engine applies."""

from __future__ import annotations

import environ
import pytest
from rest_framework.test import APIClient

from controlplane import egress
from engine import hostkeys, sftp_connect


@pytest.mark.django_db
def test_network_shows_each_regions_egress_and_the_engines_ssh_policy(make_tenant, settings):
    settings.FERRY_REGIONS = ["us-east-1", "us-west-2"]
    settings.FERRY_EGRESS_ADDRESSES = egress.parse("us-east-1=203.0.113.10,203.0.113.11;us-west-2=")
    _, read_key = make_tenant(scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    response = client.get("/api/v1/network")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["regions"] == [
        {"region": "us-east-1", "egress_addresses": ["203.0.113.10", "203.0.113.11"]},
        {"region": "us-west-2", "egress_addresses": []},
    ]
    assert body["ssh"]["ciphers"] == sftp_connect.ENCRYPTION_ALGS
    assert body["ssh"]["kex_algorithms"] == sftp_connect.KEX_ALGS
    assert body["ssh"]["macs"] == sftp_connect.MAC_ALGS
    assert body["ssh"]["host_key_types"] == list(hostkeys.KEY_TYPE_ALGORITHMS)
    assert "rsa-sha2-512" in body["ssh"]["host_key_algorithms"] and "ssh-rsa" not in body["ssh"]["host_key_algorithms"]
    assert body["ssh"]["client_key_algorithm"] == "ssh-ed25519"
    assert not any("sha1" in alg for alg in body["ssh"]["kex_algorithms"] + body["ssh"]["macs"])
    assert APIClient().get("/api/v1/network").status_code == 401


def test_egress_addresses_parse_the_format_region_yaml_writes():
    assert egress.parse("") == {}
    assert egress.parse("us-east-1=203.0.113.10, 2001:db8::1;us-west-2=") == {
        "us-east-1": ["203.0.113.10", "2001:db8::1"],
        "us-west-2": [],
    }
    for bad in ("us-east-1=not-an-ip", "nowhere=203.0.113.10", "us-east-1", "us-east-1=;us-east-1="):
        with pytest.raises(environ.ImproperlyConfigured):
            egress.parse(bad)
