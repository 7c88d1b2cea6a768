import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("listening", "0007_signals_devices_customer_tags"),
        ("responses", "0007_case_snooze_activity_macro_merge"),
    ]

    operations = [
        migrations.CreateModel(
            name="SignalRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=120)),
                ("enabled", models.BooleanField(default=True)),
                ("kind", models.CharField(choices=[("count", "Several signals in a window"),
                                                   ("followed_by_negative", "A signal, then an unhappy message"),
                                                   ("absence", "No signal for days")],
                                          default="count", max_length=24)),
                ("signal_type", models.CharField(max_length=40)),
                ("per", models.CharField(choices=[("customer", "Customer"), ("device", "Device")],
                                         default="customer", max_length=10)),
                ("threshold", models.PositiveIntegerField(default=1)),
                ("window_minutes", models.PositiveIntegerField(default=60)),
                ("absence_days", models.PositiveIntegerField(default=0)),
                ("actions", models.JSONField(default=dict)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("team", models.ForeignKey(blank=True, help_text="Whose Care queue gets the case; empty: the team "
                                           "of the customer's channel.", null=True,
                                           on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                                           to="responses.team")),
            ],
            options={"ordering": ["name", "id"]},
        ),
        migrations.CreateModel(
            name="SignalRuleState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=140)),
                ("recent", models.JSONField(default=list)),
                ("last_at", models.DateTimeField(blank=True, null=True)),
                ("last_signal_id", models.BigIntegerField(blank=True, null=True)),
                ("fired_until", models.DateTimeField(blank=True, null=True)),
                ("fired_at", models.DateTimeField(blank=True, null=True)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                               to="listening.customer")),
                ("rule", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="states",
                                           to="responses.signalrule")),
            ],
            options={
                "indexes": [models.Index(fields=["rule", "last_at"], name="signal_rule_state_last_idx")],
                "constraints": [models.UniqueConstraint(fields=("rule", "key"), name="signal_rule_state_unique")],
            },
        ),
        migrations.CreateModel(
            name="SignalRuleFiring",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.CharField(max_length=140)),
                ("signal_ids", models.JSONField(default=list)),
                ("reason", models.CharField(max_length=300)),
                ("done", models.JSONField(blank=True, default=list)),
                ("fired_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("case", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                           related_name="signal_firings", to="responses.case")),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                               to="listening.customer")),
                ("message", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                              related_name="+", to="listening.message")),
                ("rule", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="firings",
                                           to="responses.signalrule")),
            ],
            options={
                "ordering": ["-fired_at", "-id"],
                "indexes": [models.Index(fields=["customer", "-fired_at"], name="signal_firing_customer_idx")],
            },
        ),
    ]
