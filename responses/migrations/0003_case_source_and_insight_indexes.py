

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def copy_source(apps, schema_editor):
    """Existing cases take their connector and channel from their conversation."""
    Case = apps.get_model("responses", "Case")
    for case in Case.objects.select_related("conversation").iterator(chunk_size=2000):
        Case.objects.filter(pk=case.pk).update(
            connector_id=case.conversation.connector_id, channel=case.conversation.channel
        )


class Migration(migrations.Migration):

    dependencies = [
        ('listening', '0003_customer_vip'),
        ('responses', '0002_event_horizon'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='case',
            name='channel',
            field=models.CharField(blank=True, default='', max_length=40),
        ),
        migrations.AddField(
            model_name='case',
            name='connector',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='listening.connector'),
        ),
        migrations.AddIndex(
            model_name='case',
            index=models.Index(fields=['opened_at'], name='case_opened_idx'),
        ),
        migrations.AddIndex(
            model_name='reply',
            index=models.Index(fields=['created_at'], name='reply_created_idx'),
        ),
        migrations.RunPython(copy_source, migrations.RunPython.noop),
    ]
