"""Small Django-side steps for ``bench.stack``, one per child process (the stack's environment).

- ``partitions``: prints ``all`` when this region's keeper holds every partition;
- ``tenant``: makes a tenant and a write API key and prints ``TENANT_ID KEY``.
"""

import sys
import uuid

import django

django.setup()

from django.conf import settings  # noqa: E402

from controlplane import tenancy  # noqa: E402
from workers import context  # noqa: E402


def main() -> None:
    if sys.argv[1] == "partitions":
        held = context.held_partitions()
        print("all" if len(held) == settings.FERRY_PARTITIONS else f"{len(held)}/{settings.FERRY_PARTITIONS}")
    elif sys.argv[1] == "tenant":
        tenant = tenancy.create_tenant(name=f"bench-{uuid.uuid4().hex[:8]}")
        print(tenant.id, tenancy.issue_api_key(tenant=tenant, scope="write").plaintext)
    else:
        raise SystemExit(f"unknown step {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
