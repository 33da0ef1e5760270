# Written for issue 16 (business metadata): additive only, so the previous release keeps
# working against it (it inserts rows without the columns: the database default {}).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("transfers", "0010_pgp_keys_source_sha256"),
    ]

    operations = [
        migrations.AddField(
            model_name="route",
            name="metadata",
            field=models.JSONField(blank=True, db_default={}, default=dict),
        ),
        migrations.AddField(
            model_name="transfer",
            name="metadata",
            field=models.JSONField(blank=True, db_default={}, default=dict),
        ),
    ]
