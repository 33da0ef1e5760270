"""The circuit breaker per endpoint (issue 17; endpoints/breaker.py, docs/endpoints.md).

Additive: new columns, nullable or with a database default, so the previous release keeps
inserting endpoints; a partial index for the open-breaker gauge.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('controlplane', '0002_mirroroutbox'),
        ('endpoints', '0003_ferry_issued_external_ids'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='circuit_open_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='endpoint',
            name='circuit_opened_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='endpoint',
            name='circuit_state',
            field=models.CharField(choices=[('closed', 'Closed'), ('open', 'Open'), ('half_open', 'Half Open')], db_default='closed', default='closed', max_length=16),
        ),
        migrations.AddField(
            model_name='endpoint',
            name='consecutive_failures',
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
        migrations.AddIndex(
            model_name='endpoint',
            index=models.Index(condition=models.Q(('circuit_state', 'closed'), _negated=True), fields=['circuit_state'], name='endpoint_circuit_not_closed'),
        ),
        migrations.AddConstraint(
            model_name='endpoint',
            constraint=models.CheckConstraint(condition=models.Q(('circuit_state__in', ['closed', 'open', 'half_open'])), name='endpoint_circuit_valid'),
        ),
    ]
