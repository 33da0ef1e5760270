# Written for issue 13 item 9 (cleanup on every terminal path): additive only, so the
# previous release keeps working against it (it inserts rows without the columns: the
# database defaults).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("transfers", "0007_transfer_request_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="transfer",
            name="cleanup_pending",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name="transfer",
            name="uploads",
            field=models.JSONField(blank=True, db_default=[], default=list),
        ),
        migrations.AddIndex(
            model_name="transfer",
            index=models.Index(
                condition=models.Q(("cleanup_pending", True)),
                fields=["partition", "finished_at"],
                name="transfer_cleanup_owed",
            ),
        ),
    ]
