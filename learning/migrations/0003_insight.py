

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('learning', '0002_default_intents'),
        ('listening', '0003_customer_vip'),
        ('responses', '0002_event_horizon'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AlertSettings',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('enabled', models.BooleanField(default=True)),
                ('sensitivity', models.CharField(choices=[('low', 'Low (z >= 5)'), ('medium', 'Medium (z >= 4)'), ('high', 'High (z >= 3)')], default='medium', max_length=8)),
                ('min_messages', models.PositiveIntegerField(default=10, help_text='A window with fewer messages than this never raises an alert.')),
                ('quiet_start', models.TimeField(blank=True, help_text='Reporting time zone; empty: never quiet.', null=True)),
                ('quiet_end', models.TimeField(blank=True, null=True)),
                ('email_to', models.TextField(blank=True, default='', help_text='Addresses, one per line or comma-separated.')),
                ('webhook_url', models.URLField(blank=True, default='', max_length=500)),
                ('webhook_secret', models.CharField(blank=True, default='', help_text='Signs the webhook body (HMAC-SHA256, X-CXM-Signature).', max_length=200)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'verbose_name_plural': 'alert settings',
            },
        ),
        migrations.CreateModel(
            name='ConversationMood',
            fields=[
                ('conversation', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='mood', serialize=False, to='listening.conversation')),
                ('connector_id', models.IntegerField()),
                ('channel', models.CharField(max_length=40)),
                ('language', models.CharField(blank=True, default='', max_length=8)),
                ('first_at', models.DateTimeField()),
                ('first_sentiment', models.CharField(max_length=10)),
                ('last_at', models.DateTimeField()),
                ('last_sentiment', models.CharField(max_length=10)),
                ('inbound_count', models.PositiveIntegerField(default=0)),
            ],
            options={
                'indexes': [models.Index(fields=['first_sentiment', 'first_at'], name='mood_first_idx')],
            },
        ),
        migrations.CreateModel(
            name='Rollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('grain', models.CharField(max_length=1)),
                ('bucket', models.DateTimeField()),
                ('connector_id', models.IntegerField()),
                ('channel', models.CharField(max_length=40)),
                ('lane', models.CharField(max_length=12)),
                ('language', models.CharField(max_length=8)),
                ('term_id', models.IntegerField(default=0)),
                ('dim', models.CharField(max_length=10)),
                ('value', models.CharField(max_length=60)),
                ('count', models.IntegerField(default=0)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('grain', 'dim', 'term_id', 'bucket', 'connector_id', 'channel', 'lane', 'language', 'value'), name='rollup_key')],
            },
        ),
        migrations.CreateModel(
            name='Alert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('volume', 'Volume spike'), ('negative', 'Negative share spike')], max_length=10)),
                ('dimension', models.CharField(choices=[('channel', 'Channel'), ('connector', 'Connector'), ('term', 'Term')], max_length=10)),
                ('key', models.CharField(max_length=60)),
                ('label', models.CharField(max_length=200)),
                ('window_start', models.DateTimeField()),
                ('window_end', models.DateTimeField()),
                ('observed', models.FloatField(help_text='Messages in the window, or their negative share.')),
                ('expected', models.FloatField(help_text='What the baseline predicts for the window.')),
                ('score', models.FloatField(help_text='Robust z-score of the observation against the baseline.')),
                ('detail', models.JSONField(blank=True, default=dict)),
                ('message_ids', models.JSONField(blank=True, default=list, help_text='The messages behind it (at most 500).')),
                ('status', models.CharField(choices=[('open', 'Open'), ('acknowledged', 'Acknowledged')], default='open', max_length=14)),
                ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                ('notified_at', models.DateTimeField(blank=True, null=True)),
                ('notify_error', models.TextField(blank=True, default='')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('acknowledged_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='responses.team')),
            ],
            options={
                'indexes': [models.Index(fields=['team', '-created_at'], name='alert_team_idx'), models.Index(fields=['team', 'kind', 'dimension', 'key', '-window_end'], name='alert_series_idx')],
            },
        ),
    ]
