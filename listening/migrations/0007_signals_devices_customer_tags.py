import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("listening", "0006_attachment"),
    ]

    operations = [
        migrations.CreateModel(
            name="Device",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("device_id", models.CharField(max_length=120, unique=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="devices",
                                               to="listening.customer")),
            ],
        ),
        migrations.CreateModel(
            name="Signal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("source", models.CharField(help_text="Where it came from: webhook:<slug>, api, mqtt, csv.",
                                            max_length=80)),
                ("external_id", models.CharField(max_length=255)),
                ("type", models.CharField(max_length=40)),
                ("device_id", models.CharField(blank=True, default="", max_length=120)),
                ("occurred_at", models.DateTimeField(help_text="The source's time.")),
                ("received_at", models.DateTimeField(default=django.utils.timezone.now,
                                                     help_text="When CXM stored it.")),
                ("payload", models.JSONField(blank=True, default=dict)),
                ("ingest_batch", models.UUIDField(blank=True, editable=False, null=True)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="signals",
                                               to="listening.customer")),
            ],
            options={
                "ordering": ["occurred_at", "id"],
                "indexes": [
                    models.Index(fields=["customer", "type", "occurred_at"], name="signal_customer_type_idx"),
                    models.Index(condition=models.Q(("device_id", ""), _negated=True),
                                 fields=["device_id", "type", "occurred_at"], name="signal_device_type_idx"),
                    models.Index(fields=["received_at"], name="signal_received_idx"),
                ],
                "constraints": [models.UniqueConstraint(fields=("source", "external_id"),
                                                        name="signal_unique_per_source")],
            },
        ),
        migrations.CreateModel(
            name="SignalRejection",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("source", models.CharField(max_length=80)),
                ("external_id", models.CharField(blank=True, default="", max_length=255)),
                ("reason", models.CharField(max_length=300)),
                ("excerpt", models.CharField(blank=True, default="", max_length=500)),
                ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
        migrations.CreateModel(
            name="CustomerTag",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=40)),
                ("added_by", models.CharField(blank=True, default="", help_text="The rule or person.",
                                              max_length=160)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="tags",
                                               to="listening.customer")),
            ],
            options={
                "ordering": ["name"],
                "constraints": [models.UniqueConstraint(fields=("customer", "name"), name="customer_tag_unique")],
            },
        ),
    ]
