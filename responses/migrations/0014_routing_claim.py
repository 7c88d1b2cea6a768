
from datetime import timedelta

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

# The routing sweep (responses.tasks.sweep_unrouted) looks back a day: classifications of messages
# received since then are marked routed here, so the sweep does not route them a second time.
BACKFILL_DAYS = 2


def backfill(apps, schema_editor):
    Classification = apps.get_model("learning", "Classification")
    RoutingClaim = apps.get_model("responses", "RoutingClaim")
    since = django.utils.timezone.now() - timedelta(days=BACKFILL_DAYS)
    ids = (Classification.objects.using(schema_editor.connection.alias)
           .filter(is_current=True, message__received_at__gte=since).values_list("pk", flat=True))
    batch = []
    for pk in ids.iterator(chunk_size=5000):
        batch.append(RoutingClaim(classification_id=pk))
        if len(batch) == 5000:
            RoutingClaim.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    RoutingClaim.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('learning', '0012_alerts_move_to_insight'),
        ('responses', '0013_proactive_message'),
    ]

    operations = [
        migrations.CreateModel(
            name='RoutingClaim',
            fields=[
                ('classification', models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False,
                    to='learning.classification')),
                ('routed_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
