"""The admin's window on regions and partition leases, which live in DynamoDB.

``PartitionLease`` has no table (``managed = False``): it only gives the admin an entry
beside the transfers; its page reads the lease table (see ``workers.admin``).
"""

from django.db import models


class PartitionLease(models.Model):
    partition = models.PositiveIntegerField(primary_key=True)

    class Meta:
        managed = False
        verbose_name = "partition lease"
        verbose_name_plural = "regions and partition leases"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"partition {self.partition}"
