# Written for issue 16 (late files): additive only (a nullable column and a new table), so
# the previous release keeps working against it.

import django.db.models.deletion
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('controlplane', '0003_apikey_expiry_and_last_use'),
        ('transfers', '0011_business_metadata'),
    ]

    operations = [
        migrations.AddField(
            model_name='route',
            name='expect_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name='ExpectationWindow',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('window_start', models.DateTimeField()),
                ('window_end', models.DateTimeField()),
                ('deadline', models.DateTimeField()),
                ('expected', models.PositiveIntegerField()),
                ('seen', models.PositiveIntegerField()),
                ('late_files', models.PositiveIntegerField(default=0)),
                ('state', models.CharField(choices=[('on_time', 'On Time'), ('late', 'Late'), ('arrived_late', 'Arrived Late')], max_length=16)),
                ('arrived_at', models.DateTimeField(blank=True, null=True)),
                ('evaluated_at', models.DateTimeField()),
                ('region', models.CharField(blank=True, max_length=32)),
                ('route', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='expectation_windows', to='transfers.route')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='controlplane.tenant')),
            ],
            options={
                'indexes': [models.Index(fields=['route', '-window_end'], name='expectation_window_latest')],
                'constraints': [models.UniqueConstraint(fields=('route', 'window_end'), name='expectation_window_unique'), models.CheckConstraint(condition=models.Q(('state__in', ['on_time', 'late', 'arrived_late'])), name='expectation_window_state_valid')],
            },
        ),
    ]
