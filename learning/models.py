"""Learn: what the classifier knows (intents, terms, weights) and what it said (classifications).

Results are append-only: a re-classification adds a row and moves `is_current`, so an old result
stays explainable by the model name and version stored on it.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from listening.models import Message


class Lane(models.TextChoices):
    ISSUE = "issue", "Issue"
    PRAISE = "praise", "Praise"
    AMBIVALENCE = "ambivalence", "Ambivalence"
    # What the models cannot place: visible to agents, with the reason, never set aside.
    TRIAGE = "triage", "Needs a look"
    NOISE = "noise", "Spam"


class Sentiment(models.TextChoices):
    NEGATIVE = "negative", "Negative"
    NEUTRAL = "neutral", "Neutral"
    POSITIVE = "positive", "Positive"


class Intent(models.Model):
    """One intent of the care taxonomy. Admins edit these; the intent head is refitted from the
    examples in a background task (learning.tasks.retrain_intents)."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    FOLLOW = "follow"
    lane = models.CharField(
        max_length=12,
        choices=[*Lane.choices, (FOLLOW, "Follow the conversation")],
        blank=True,
        default="",
        help_text="Lane this intent points to; blank lets sentiment decide; 'follow' keeps the lane of the "
        "conversation the message continues.",
    )
    priority_weight = models.FloatField(
        default=0.0, help_text="Added to the priority score (0-1 scale; a churn threat outranks a question)."
    )
    enabled = models.BooleanField(default=True)
    counts_on_dashboards = models.BooleanField(
        default=True,
        help_text="Shown in the dashboards' intent distribution. Off for facts about the conversation (a "
        "follow-up) rather than what the customer wants.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class IntentExample(models.Model):
    class Source(models.TextChoices):
        DEFAULT = "default", "Shipped default"
        ADMIN = "admin", "Admin"
        CORRECTION = "correction", "Agent correction"

    intent = models.ForeignKey(Intent, on_delete=models.CASCADE, related_name="examples")
    text = models.CharField(max_length=500)
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["intent", "text"], name="intent_example_unique")]

    def __str__(self) -> str:
        return self.text


class IntentModel(models.Model):
    """A fitted intent head: a linear classifier over the shared encoder's sentence embedding.
    Workers use the newest row fitted for their encoder and notice new rows between batches."""

    version = models.CharField(max_length=40, unique=True)
    encoder = models.CharField(max_length=200, help_text="Name and version of the encoder the head was fitted on.")
    labels = models.JSONField(help_text="Intent slugs, in the order of the weight rows.")
    weights = models.BinaryField(help_text="float32 array, labels x (dim + 1), bias last.")
    example_count = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"intents {self.version}"


class Term(models.Model):
    """A brand, product, competitor or topic that admins want found in messages, with synonyms."""

    class Kind(models.TextChoices):
        BRAND = "brand", "Brand"
        PRODUCT = "product", "Product"
        COMPETITOR = "competitor", "Competitor"
        TOPIC = "topic", "Topic"

    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.TOPIC)
    synonyms = models.JSONField(default=list, blank=True, help_text="Other spellings, matched case-insensitively.")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="term_unique_per_kind")]
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def phrases(self) -> list[str]:
        seen, out = set(), []
        for phrase in [self.name, *self.synonyms]:
            key = str(phrase).strip().lower()
            if key and key not in seen:
                seen.add(key)
                out.append(str(phrase).strip())
        return out


class PriorityWeights(models.Model):
    """The tunable weights of the priority score (a single row; admins edit it)."""

    negativity = models.FloatField(default=0.35, help_text="Times the probability of negative sentiment.")
    anger = models.FloatField(default=0.10, help_text="Times the probability of anger.")
    intent = models.FloatField(default=1.0, help_text="Times the intent's own priority weight.")
    reach = models.FloatField(default=0.15, help_text="Times log10(followers)/6, capped at 1.")
    history = models.FloatField(default=0.10, help_text="Per earlier negative message in the window.")
    escalation = models.FloatField(default=0.25, help_text="Added once the customer hits the escalation count.")
    escalation_count = models.PositiveSmallIntegerField(default=3)
    window_minutes = models.PositiveIntegerField(default=60)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "priority weights"

    def __str__(self) -> str:
        return "Priority weights"

    @classmethod
    def current(cls) -> "PriorityWeights":
        return cls.objects.order_by("pk").first() or cls.objects.create()


class Classification(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "Classified"
        FAILED = "failed", "Failed"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="classifications")
    is_current = models.BooleanField(default=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OK)
    error = models.TextField(blank=True, default="")

    sentiment = models.CharField(max_length=10, choices=Sentiment.choices, blank=True, default="")
    sentiment_scores = models.JSONField(default=dict, blank=True)
    emotion = models.CharField(max_length=20, blank=True, default="")
    emotion_scores = models.JSONField(default=dict, blank=True)
    intent = models.CharField(max_length=60, blank=True, default="")
    intent_scores = models.JSONField(default=dict, blank=True)
    language = models.CharField(max_length=8, blank=True, default="")
    language_confidence = models.FloatField(null=True, blank=True)
    topics = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)
    lane = models.CharField(max_length=12, choices=Lane.choices, blank=True, default="")
    priority = models.FloatField(default=0.0)
    priority_factors = models.JSONField(default=dict, blank=True)
    confidence = models.FloatField(null=True, blank=True, help_text="Lowest confidence of the heads that set the lane.")
    flags = models.JSONField(default=list, blank=True, help_text="e.g. truncated, empty, invalid_unicode.")

    model_name = models.CharField(max_length=200, blank=True, default="")
    model_version = models.CharField(max_length=80, blank=True, default="")
    models_used = models.JSONField(default=dict, blank=True, help_text="Name and version per head.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message"], condition=models.Q(is_current=True), name="classification_one_current"
            )
        ]
        indexes = [
            models.Index(fields=["lane", "created_at"], name="classification_lane_idx"),
            models.Index(fields=["model_version"], name="classification_version_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.lane or self.status}"


class Correction(models.Model):
    """An agent's correction of a classification: a labelled example for the next retrain."""

    class Field(models.TextChoices):
        SENTIMENT = "sentiment", "Sentiment"
        INTENT = "intent", "Intent"
        LANE = "lane", "Lane"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="corrections")
    classification = models.ForeignKey(
        Classification, null=True, blank=True, on_delete=models.SET_NULL, related_name="corrections"
    )
    field = models.CharField(max_length=10, choices=Field.choices)
    previous = models.CharField(max_length=60, blank=True, default="")
    value = models.CharField(max_length=60)
    text = models.TextField(help_text="The message text as the model saw it, kept for training.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    used_in_version = models.CharField(max_length=80, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["field", "created_at"], name="correction_field_idx")]

    def __str__(self) -> str:
        return f"{self.field}: {self.previous} -> {self.value}"


class ModelVersion(models.Model):
    """A trained multi-task model on disk, and whether workers use it. The bundled model is the
    fallback when no row is active."""

    name = models.CharField(max_length=120)
    version = models.CharField(max_length=80, unique=True)
    path = models.CharField(max_length=500)
    metrics = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=False)
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


# --- Insight: rollups kept current by the workers -----------------------------------------------


class Rollup(models.Model):
    """Counts of inbound messages by their current classification, for the dashboards.

    One row per (grain, bucket, connector, channel, lane, language, term, dim, value). `dim` is the
    classification field counted (sentiment, intent or emotion) and `value` its value; summing the
    sentiment rows gives volume. `term_id` 0 counts every message; any other id counts only the
    messages that mention that term. Hourly rows (grain "h", UTC hours) carry sentiment only; daily
    rows (grain "d", days of the reporting time zone) carry all three dims. `learning.rollups`
    adds and subtracts in the same transaction that moves `Classification.is_current`, so a
    re-classification moves a message between rows instead of counting it twice.
    """

    grain = models.CharField(max_length=1)
    bucket = models.DateTimeField()
    connector_id = models.IntegerField()
    channel = models.CharField(max_length=40)
    lane = models.CharField(max_length=12)
    language = models.CharField(max_length=8)
    term_id = models.IntegerField(default=0)
    dim = models.CharField(max_length=10)
    value = models.CharField(max_length=60)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grain", "dim", "term_id", "bucket", "connector_id", "channel", "lane", "language", "value"],
                # On PostgreSQL the index also holds the count (migration 0004), so the panels are
                # answered from the index alone. SQLite has no INCLUDE.
                name="rollup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket:%Y-%m-%d %H} {self.dim}={self.value} term {self.term_id}: {self.count}"


class ConversationMood(models.Model):
    """How a conversation began and how it stands, from its customer's messages: the sentiment of
    the first and of the latest inbound message with a current classification. Kept by the workers
    with the rollups; the 'recovered customers' panel counts these rows."""

    conversation = models.OneToOneField(
        "listening.Conversation", on_delete=models.CASCADE, primary_key=True, related_name="mood"
    )
    connector_id = models.IntegerField()
    channel = models.CharField(max_length=40)
    language = models.CharField(max_length=8, blank=True, default="")
    first_at = models.DateTimeField()
    first_sentiment = models.CharField(max_length=10)
    last_at = models.DateTimeField()
    last_sentiment = models.CharField(max_length=10)
    inbound_count = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["first_sentiment", "first_at"], name="mood_first_idx")]

    def __str__(self) -> str:
        return f"{self.conversation_id}: {self.first_sentiment} -> {self.last_sentiment}"
