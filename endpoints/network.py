"""What a customer's network team needs to let Ferry in: the addresses Ferry connects from
in each region, and the SSH algorithms its client accepts (GET /api/v1/network).

Read from the settings (``FERRY_EGRESS_ADDRESSES``, region.yaml) and from the engine's own
connection policy (engine/sftp_connect.py, engine/hostkeys.py), so what is published is
what the client does.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from endpoints import sshkeys
from engine import hostkeys, sftp_connect


def facts() -> dict[str, Any]:
    """Egress addresses per region (every active region, configured or not) and the SSH policy."""
    configured: dict[str, list[str]] = settings.FERRY_EGRESS_ADDRESSES
    regions = list(dict.fromkeys([*settings.FERRY_REGIONS, *configured]))
    return {
        "regions": [{"region": region, "egress_addresses": list(configured.get(region, []))} for region in regions],
        "ssh": {
            "host_key_types": list(hostkeys.KEY_TYPE_ALGORITHMS),
            "host_key_algorithms": [alg for algs in hostkeys.KEY_TYPE_ALGORITHMS.values() for alg in algs],
            "ciphers": list(sftp_connect.ENCRYPTION_ALGS),
            "kex_algorithms": list(sftp_connect.KEX_ALGS),
            "macs": list(sftp_connect.MAC_ALGS),
            "client_key_algorithm": sshkeys.KEY_ALGORITHM,
        },
    }
