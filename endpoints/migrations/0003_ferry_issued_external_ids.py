"""Ferry issues the external id of every S3 endpoint (issue 13, item 2).

Until now the tenant chose ``config.external_id``, which let tenant B name tenant A's role
and A's external id. Every live S3 endpoint gets a new Ferry-issued id (a deleted one never
runs again; its mirror item is a tombstone); its version grows and the config mirror gets the new document,
as any change would. The customer must put the new id in the role's trust policy
(docs/endpoints.md, "Roles and the external id"): until then the role cannot be assumed.
"""

import secrets

from django.db import migrations


def _document(endpoint) -> dict:
    # endpoints.services.document_of at the time of writing (a migration must not import it).
    return {
        "id": str(endpoint.id),
        "tenant_id": str(endpoint.tenant_id),
        "name": endpoint.name,
        "kind": endpoint.kind,
        "config": endpoint.config,
        "secret_arn": endpoint.secret_arn,
        "secret_version": endpoint.secret_version,
        "credential_kinds": list(endpoint.credential_kinds),
        "credentials_updated_at": endpoint.credentials_updated_at.isoformat()
        if endpoint.credentials_updated_at
        else None,
        "version": endpoint.version,
        "created_at": endpoint.created_at.isoformat(),
        "updated_at": endpoint.updated_at.isoformat(),
    }


def issue_external_ids(apps, schema_editor) -> None:
    Endpoint = apps.get_model("endpoints", "Endpoint")
    MirrorOutbox = apps.get_model("controlplane", "MirrorOutbox")
    # The historical model's manager is a plain one: filter out deleted rows here.
    for endpoint in Endpoint.objects.filter(kind="s3", deleted_at__isnull=True).order_by("pk"):
        endpoint.config = {**endpoint.config, "external_id": f"ferry-{secrets.token_hex(16)}"}
        endpoint.version += 1
        endpoint.save(update_fields=["config", "version", "updated_at"])
        MirrorOutbox.objects.create(
            kind="endpoint", object_id=str(endpoint.id), version=endpoint.version, document=_document(endpoint)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0002_mirroroutbox"),
        ("endpoints", "0002_endpoint_soft_delete"),
    ]

    # Forward only: the tenant-chosen ids are gone on purpose.
    operations = [migrations.RunPython(issue_external_ids, migrations.RunPython.noop, elidable=False)]
