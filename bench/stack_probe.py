"""Prints ``all`` when this region's keeper holds every partition (run by bench.stack)."""

import django

django.setup()

from django.conf import settings  # noqa: E402

from workers import context  # noqa: E402

held = context.held_partitions()
print("all" if len(held) == settings.FERRY_PARTITIONS else f"{len(held)}/{settings.FERRY_PARTITIONS}")
