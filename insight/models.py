"""Insight's own rows: spike alerts and their settings.

They were learning's until the insight app existed; the tables kept their names
(`learning_alert`, `learning_alertsettings`): the move changed Django's state only
(learning 0012 and insight 0001, both SeparateDatabaseAndState), so no row moved.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from listening import crypto


class AlertSettings(models.Model):
    """One row: how sensitive spike detection is and when it keeps quiet. Admins edit it."""

    class Sensitivity(models.TextChoices):
        LOW = "low", "Low (z >= 5)"
        MEDIUM = "medium", "Medium (z >= 4)"
        HIGH = "high", "High (z >= 3)"

    enabled = models.BooleanField(default=True)
    sensitivity = models.CharField(max_length=8, choices=Sensitivity.choices, default=Sensitivity.MEDIUM)
    min_messages = models.PositiveIntegerField(
        default=10, help_text="A window with fewer messages than this never raises an alert."
    )
    # No spike without a usual level to stand above: a new install's or a new term's first busy
    # hour would be "against a usual 0". At most the 168 hours the baseline looks back.
    min_history_hours = models.PositiveSmallIntegerField(
        default=72, help_text="A series raises no alert until its first message in the last 7 days came at least "
                              "this many hours before the hour tested (72: 3 days; 0: alert from the first hour)."
    )
    quiet_start = models.TimeField(null=True, blank=True, help_text="Reporting time zone; empty: never quiet.")
    quiet_end = models.TimeField(null=True, blank=True)
    email_to = models.TextField(blank=True, default="", help_text="Addresses, one per line or comma-separated.")
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    # Signs the webhook body (HMAC-SHA256, X-CXM-Signature); encrypted at rest like connector
    # credentials (listening.crypto), read and written through `webhook_secret`.
    webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "learning_alertsettings"  # moved from learning without moving data
        verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"Alert settings ({self.sensitivity})"

    def __repr__(self) -> str:
        return f"<AlertSettings id={self.pk}>"  # never the secret: reprs end up in logs

    @property
    def webhook_secret(self) -> str:
        return crypto.decrypt_text(self.webhook_secret_encrypted)

    @webhook_secret.setter
    def webhook_secret(self, value: str) -> None:
        self.webhook_secret_encrypted = crypto.encrypt_text(value)

    @property
    def has_webhook_secret(self) -> bool:
        """Whether one is set, without decrypting it (pages say "set" even when keys are wrong)."""
        return bool(self.webhook_secret_encrypted)

    @classmethod
    def current(cls) -> "AlertSettings":
        return cls.objects.order_by("pk").first() or cls.objects.create()


crypto.encrypted_column("insight.AlertSettings", "webhook_secret_encrypted")  # re-encrypted by rotate_credentials


class Alert(models.Model):
    """A spike: a series (a team's channel, connector or term) whose volume or negative share in
    the last window stood far above its own recent baseline (see insight.alerts)."""

    class Kind(models.TextChoices):
        VOLUME = "volume", "Volume spike"
        NEGATIVE = "negative", "Negative share spike"

    class Dimension(models.TextChoices):
        TEAM = "team", "All of the team's messages"
        CHANNEL = "channel", "Channel"
        CONNECTOR = "connector", "Connector"
        TERM = "term", "Term"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"

    team = models.ForeignKey("responses.Team", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    dimension = models.CharField(max_length=10, choices=Dimension.choices)
    key = models.CharField(max_length=60)
    label = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    observed = models.FloatField(help_text="Messages in the window, or their negative share.")
    expected = models.FloatField(help_text="What the baseline predicts for the window.")
    score = models.FloatField(help_text="Robust z-score of the observation against the baseline.")
    detail = models.JSONField(default=dict, blank=True)
    message_ids = models.JSONField(default=list, blank=True, help_text="The messages behind it (at most 500).")
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    notify_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "learning_alert"  # moved from learning without moving data
        indexes = [
            models.Index(fields=["team", "-created_at"], name="alert_team_idx"),
            models.Index(fields=["team", "kind", "dimension", "key", "-window_end"], name="alert_series_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.label}"


class CareRollup(models.Model):
    """The care panel's counts, kept by PostgreSQL triggers on cases and replies (insight.care_rollup).

    One row per (grain, bucket, detail, team, connector, channel, lane, metric, user, bin, shard). Grain "d"
    rows start at midnight of the reporting time zone, grain "m" rows at the first of its month. A
    `detail` row keeps the case's connector, channel and lane; the others sum over them (connector
    0, channel and lane ""), for the unnarrowed panel. Metrics: "cases" (user: the assignee, 0 for
    none), "replies" (not automatic; user: the author), "met"/"late" (first response within or past
    the SLA), "frs"/"rs" (first-response and resolution times, wall clock: `bin` is a log-spaced
    bucket of the seconds, see insight.care_rollup.bounds). Counts are exact; percentiles read from
    the bins are approximate."""

    grain = models.CharField(max_length=1)
    bucket = models.DateTimeField()
    detail = models.BooleanField()
    team_id = models.IntegerField()
    connector_id = models.IntegerField()
    channel = models.CharField(max_length=40)
    lane = models.CharField(max_length=12)
    metric = models.CharField(max_length=8)
    user_id = models.IntegerField()
    bin = models.SmallIntegerField()
    # Which of care_rollup.SHARDS copies of the key a writing transaction used (0 after a rebuild):
    # concurrent routing transactions do not queue on one row. Readers sum over it.
    shard = models.SmallIntegerField(db_default=0)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grain", "detail", "team_id", "bucket", "connector_id", "channel", "lane", "metric",
                        "user_id", "bin", "shard"],
                name="care_rollup_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket:%Y-%m-%d} team {self.team_id} {self.metric}/{self.bin}: {self.n}"


class CareRollupState(models.Model):
    """One row (id 1) while the care rollup is kept: the reporting time zone its day and month
    buckets were cut in. The triggers read it; no row, no rollup kept. A different zone than
    CXM_REPORT_TIME_ZONE makes the care panel read raw cases until `rebuild_rollups` runs."""

    time_zone = models.CharField(max_length=64)
    built_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Care rollup in {self.time_zone}"
