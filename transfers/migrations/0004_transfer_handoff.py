# Written for issue 11 (region-correct dispatch): additive only, so the previous release
# keeps working against it (it inserts rows without the column: the database default).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("transfers", "0003_transfer_path_prefix_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="transfer",
            name="handoff_from",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        migrations.AddIndex(
            model_name="transfer",
            index=models.Index(
                condition=models.Q(("state", "pending"), models.Q(("handoff_from", ""), _negated=True)),
                fields=["partition"],
                name="transfer_handoff_due",
            ),
        ),
    ]
