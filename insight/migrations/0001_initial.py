import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """Alert and AlertSettings, taken over from learning (learning 0012 let go of them). State
    only: the tables learning made (learning_alert, learning_alertsettings) and their rows stay."""

    initial = True

    dependencies = [
        ("learning", "0012_alerts_move_to_insight"),
        ("responses", "0002_event_horizon"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="AlertSettings",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("enabled", models.BooleanField(default=True)),
                        ("sensitivity", models.CharField(choices=[("low", "Low (z >= 5)"), ("medium", "Medium (z >= 4)"),
                                                                  ("high", "High (z >= 3)")],
                                                         default="medium", max_length=8)),
                        ("min_messages", models.PositiveIntegerField(
                            default=10, help_text="A window with fewer messages than this never raises an alert.")),
                        ("quiet_start", models.TimeField(blank=True, help_text="Reporting time zone; empty: never quiet.",
                                                         null=True)),
                        ("quiet_end", models.TimeField(blank=True, null=True)),
                        ("email_to", models.TextField(blank=True, default="",
                                                      help_text="Addresses, one per line or comma-separated.")),
                        ("webhook_url", models.URLField(blank=True, default="", max_length=500)),
                        ("webhook_secret_encrypted", models.TextField(blank=True, default="", editable=False)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={"verbose_name_plural": "alert settings", "db_table": "learning_alertsettings"},
                ),
                migrations.CreateModel(
                    name="Alert",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("kind", models.CharField(choices=[("volume", "Volume spike"),
                                                           ("negative", "Negative share spike")], max_length=10)),
                        ("dimension", models.CharField(choices=[("team", "All of the team's messages"),
                                                                ("channel", "Channel"), ("connector", "Connector"),
                                                                ("term", "Term")], max_length=10)),
                        ("key", models.CharField(max_length=60)),
                        ("label", models.CharField(max_length=200)),
                        ("window_start", models.DateTimeField()),
                        ("window_end", models.DateTimeField()),
                        ("observed", models.FloatField(help_text="Messages in the window, or their negative share.")),
                        ("expected", models.FloatField(help_text="What the baseline predicts for the window.")),
                        ("score", models.FloatField(help_text="Robust z-score of the observation against the baseline.")),
                        ("detail", models.JSONField(blank=True, default=dict)),
                        ("message_ids", models.JSONField(blank=True, default=list,
                                                         help_text="The messages behind it (at most 500).")),
                        ("status", models.CharField(choices=[("open", "Open"), ("acknowledged", "Acknowledged")],
                                                    default="open", max_length=14)),
                        ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                        ("notified_at", models.DateTimeField(blank=True, null=True)),
                        ("notify_error", models.TextField(blank=True, default="")),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("acknowledged_by", models.ForeignKey(blank=True, null=True,
                                                              on_delete=django.db.models.deletion.SET_NULL,
                                                              to=settings.AUTH_USER_MODEL)),
                        ("team", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="alerts",
                                                   to="responses.team")),
                    ],
                    options={
                        "db_table": "learning_alert",
                        "indexes": [models.Index(fields=["team", "-created_at"], name="alert_team_idx"),
                                    models.Index(fields=["team", "kind", "dimension", "key", "-window_end"],
                                                 name="alert_series_idx")],
                    },
                ),
            ],
        ),
    ]
