# Written for issue 13 item 17 (one correlation id): additive only, so the previous release
# keeps working against it (it inserts rows without the column: the database default).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("transfers", "0006_transfer_cancel_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="transfer",
            name="request_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
    ]
