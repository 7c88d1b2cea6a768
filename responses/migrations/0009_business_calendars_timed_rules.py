
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('listening', '0006_attachment'),
        ('responses', '0008_signal_rules'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='BusinessCalendar',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('time_zone', models.CharField(default='UTC', max_length=64)),
                ('hours', models.JSONField(default=list)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name='Holiday',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('date', models.DateField()),
                ('name', models.CharField(blank=True, default='', max_length=200)),
            ],
            options={
                'ordering': ['date'],
            },
        ),
        migrations.CreateModel(
            name='TimedRule',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=120)),
                ('enabled', models.BooleanField(default=True)),
                ('trigger', models.CharField(choices=[('pending', 'Waiting on the customer'), ('waiting', 'Waiting on an agent')], max_length=10)),
                ('after_minutes', models.PositiveIntegerField(help_text='Business minutes in that state.')),
                ('action', models.CharField(choices=[('close', 'Close the case (with a message)'), ('escalate', 'Escalate (raise the priority)'), ('reassign', 'Move to a queue (unassigned)'), ('notify', "Notify the team's supervisors")], max_length=10)),
                ('priority_boost', models.FloatField(default=0.3, help_text='Escalate: added to the priority (0 to 1).')),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['team_id', 'after_minutes', 'id'],
            },
        ),
        migrations.CreateModel(
            name='TimedRuleRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('since', models.DateTimeField()),
                ('fired_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name='case',
            name='pending_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='case',
            name='sla_near_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='case',
            index=models.Index(fields=['status', 'sla_near_at'], name='case_sla_near_idx'),
        ),
        migrations.AddIndex(
            model_name='case',
            index=models.Index(fields=['team', 'status', 'waiting_since'], name='case_waiting_idx'),
        ),
        migrations.AddIndex(
            model_name='case',
            index=models.Index(fields=['team', 'status', 'pending_since'], name='case_pending_idx'),
        ),
        migrations.AddField(
            model_name='businesscalendar',
            name='team',
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='calendar', to='responses.team'),
        ),
        migrations.AddField(
            model_name='businesscalendar',
            name='updated_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='holiday',
            name='calendar',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='holidays', to='responses.businesscalendar'),
        ),
        migrations.AddField(
            model_name='timedrule',
            name='canned',
            field=models.ForeignKey(blank=True, help_text='Close: the message sent to the customer.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='responses.cannedresponse'),
        ),
        migrations.AddField(
            model_name='timedrule',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='timedrule',
            name='queue',
            field=models.ForeignKey(blank=True, help_text='Move to a queue: which one.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='responses.queue'),
        ),
        migrations.AddField(
            model_name='timedrule',
            name='team',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='timed_rules', to='responses.team'),
        ),
        migrations.AddField(
            model_name='timedrulerun',
            name='case',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='responses.case'),
        ),
        migrations.AddField(
            model_name='timedrulerun',
            name='rule',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='responses.timedrule'),
        ),
        migrations.AddConstraint(
            model_name='holiday',
            constraint=models.UniqueConstraint(fields=('calendar', 'date'), name='holiday_once_per_date'),
        ),
        migrations.AddConstraint(
            model_name='timedrulerun',
            constraint=models.UniqueConstraint(fields=('rule', 'case', 'since'), name='timed_rule_once_per_wait'),
        ),
    ]
