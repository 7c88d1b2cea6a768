"""The listening model: where messages come from (Connector), who wrote them (Contact, grouped
into a Customer), the thread they belong to (Conversation) and the messages themselves."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from listening import crypto
from listening.connectors import get_connector_class


class Health(models.TextChoices):
    OK = "ok", "OK"
    DEGRADED = "degraded", "Degraded"
    FAILING = "failing", "Failing"


class Direction(models.TextChoices):
    INBOUND = "in", "Inbound"
    OUTBOUND = "out", "Outbound"


class Connector(models.Model):
    """A configured source of one kind (Telegram bot, Meta app, feed, ...).

    `config` holds non-secret settings validated by the connector class; `credentials` are
    encrypted at rest and only ever decrypted in memory (see listening.crypto)."""

    kind = models.CharField(max_length=40, db_index=True)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    credentials_encrypted = models.TextField(blank=True, default="", editable=False)

    # Polling state. The cursor only moves forward in the same transaction as the messages it
    # covers, so a crash mid-page never loses or duplicates anything.
    cursor = models.JSONField(default=dict, blank=True)
    poll_interval_seconds = models.PositiveIntegerField(default=60)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)

    health = models.CharField(max_length=10, choices=Health.choices, default=Health.OK)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    messages_received = models.PositiveBigIntegerField(default=0)
    duplicates_received = models.PositiveBigIntegerField(default=0)
    deliveries_rejected = models.PositiveBigIntegerField(default=0)
    # The provider's rate-limit headroom from its latest answer: {remaining, limit, resets_at,
    # seen_at} (see BaseConnector.note_rate_limit); empty until a provider tells it.
    rate_limit = models.JSONField(default=dict, blank=True)
    # The latest backfill (listening.backfill): {since, state, pages, created, duplicates,
    # started_at, finished_at, error}; state is the connector's own place in the walk back.
    backfill = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def __repr__(self) -> str:
        # Deliberately excludes config and credentials: reprs end up in logs and tracebacks.
        return f"<Connector id={self.pk} kind={self.kind} slug={self.slug}>"

    @property
    def credentials(self) -> dict[str, Any]:
        return crypto.decrypt_json(self.credentials_encrypted)

    @credentials.setter
    def credentials(self, value: dict[str, Any]) -> None:
        self.credentials_encrypted = crypto.encrypt_json(value)

    def renew_credentials(self, field: str, stale: str, fetch) -> dict[str, Any]:
        """Replace credentials that went stale (`field` held `stale` when the provider refused
        them), once across workers, and return the credentials to use from now on.

        Some OAuth 2 providers (X among them) answer a refresh with a new refresh token and void
        the old one at once; kept only in a worker's memory, the new token would be lost with the
        worker. So, under a lock on this row: while the saved `field` still holds `stale`,
        `fetch(saved)` asks the provider for new values, which are merged in and saved before the
        lock is released; when another worker has renewed them meanwhile, its saved credentials
        are returned without calling the provider (a second refresh with a voided token would
        fail). A `fetch` that raises saves nothing. A row not yet saved (a connection test) is
        renewed in memory. This row is updated in place, so a later save keeps the new values."""
        if self.pk is None:
            updated = {**self.credentials, **fetch(self.credentials)}
        else:
            with transaction.atomic():
                locked = Connector.objects.select_for_update().only("credentials_encrypted").get(pk=self.pk)
                saved = locked.credentials
                if str(saved.get(field) or "") != stale:
                    updated = saved
                else:
                    updated = {**saved, **fetch(saved)}
                    Connector.objects.filter(pk=self.pk).update(
                        credentials_encrypted=crypto.encrypt_json(updated), updated_at=timezone.now())
        self.credentials = updated
        return updated

    def get_backend(self):
        """The connector class instance for this row (see listening.connectors registry)."""
        return get_connector_class(self.kind)(self)


crypto.encrypted_column("listening.Connector", "credentials_encrypted")  # re-encrypted by rotate_credentials


class CustomerTier(models.TextChoices):
    """A customer's tier or role, for routing, replies and segments."""

    STANDARD = "standard", "Standard"
    PREMIUM = "premium", "Premium"
    BUSINESS = "business", "Business"
    PARTNER = "partner", "Partner"
    EMPLOYEE = "employee", "Employee"


class Customer(models.Model):
    """One person, possibly seen on several channels (each a Contact)."""

    display_name = models.CharField(max_length=200, blank=True, default="")
    email = models.EmailField(blank=True, default="", db_index=True)
    phone = models.CharField(max_length=32, blank=True, default="", db_index=True)
    vip = models.BooleanField(default=False, help_text="Routing rules can send VIPs' messages elsewhere.")
    # The customer asked not to be contacted first: responses.proactive refuses to message them.
    proactive_opt_out = models.BooleanField(default=False, help_text="Never send this customer a proactive message.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The living profile (listening.attributes, listening.location): values of the admins'
    # AttributeDefinitions by key, already checked against their type (dates as ISO text).
    attributes = models.JSONField(default=dict, blank=True)
    tier = models.CharField(max_length=20, blank=True, default="", choices=CustomerTier.choices)
    time_zone = models.CharField(max_length=64, blank=True, default="", help_text="IANA name, e.g. Europe/Berlin.")
    time_zone_source = models.CharField(max_length=20, blank=True, default="")
    # What a channel said (listening.location: below a zone set by a person, above the phone's
    # prefix): the zone, "<channel>:<who said it>", and the message's time (the newest wins).
    channel_time_zone = models.CharField(max_length=64, blank=True, default="")
    channel_time_zone_source = models.CharField(max_length=60, blank=True, default="")
    channel_time_zone_at = models.DateTimeField(null=True, blank=True)
    location_lat = models.FloatField(null=True, blank=True)
    location_lon = models.FloatField(null=True, blank=True)
    location_at = models.DateTimeField(null=True, blank=True)
    location_source = models.CharField(max_length=40, blank=True, default="")
    # Learned from where the customer writes; an agent's choice wins over it (preferred_channel).
    learned_channel = models.CharField(max_length=40, blank=True, default="")
    channel_override = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return self.display_name or self.email or self.phone or f"Customer {self.pk}"

    @property
    def preferred_channel(self) -> str:
        return self.channel_override or self.learned_channel


class Contact(models.Model):
    """An author on one channel, identified by the channel's own id for them."""

    channel = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    handle = models.CharField(max_length=255, blank=True, default="")
    display_name = models.CharField(max_length=255, blank=True, default="")
    profile_url = models.URLField(max_length=500, blank=True, default="")
    followers = models.PositiveBigIntegerField(null=True, blank=True)
    email = models.EmailField(blank=True, default="")
    email_verified = models.BooleanField(default=False)
    phone = models.CharField(max_length=32, blank=True, default="")
    phone_verified = models.BooleanField(default=False)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts"
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    message_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="contact_unique_per_channel")
        ]

    def __str__(self) -> str:
        return self.display_name or self.handle or self.external_id


class Conversation(models.Model):
    """A thread on the source: a DM thread, a reply chain, an email thread, a review."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="conversations")
    channel = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    subject = models.CharField(max_length=300, blank=True, default="")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    started_at = models.DateTimeField()
    last_message_at = models.DateTimeField(db_index=True)
    message_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "external_id"], name="conversation_unique_per_connector"
            )
        ]

    def __str__(self) -> str:
        return self.subject or f"{self.channel} thread {self.external_id}"


class Message(models.Model):
    """One message, stored exactly once per (connector, external_id)."""

    # No single-column indexes on connector, conversation and author: the unique constraint and
    # the (connector|conversation|author, sent_at) indexes lead with them and serve the same
    # lookups (and the foreign keys' checks), and each index is upkeep on every insert (dropping
    # the three took 15% off the backend CPU of a file import's message INSERT).
    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="messages", db_index=False)
    external_id = models.CharField(max_length=255)
    channel = models.CharField(max_length=40)
    direction = models.CharField(max_length=3, choices=Direction.choices, default=Direction.INBOUND)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages",
                                     db_index=False)
    author = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages", db_index=False
    )
    text = models.TextField(blank=True, default="")
    url = models.URLField(max_length=1000, blank=True, default="")
    sent_at = models.DateTimeField(help_text="The source's timestamp.")
    received_at = models.DateTimeField(default=timezone.now, help_text="When CXM stored it.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    parent_external_id = models.CharField(max_length=255, blank=True, default="")
    raw = models.JSONField(default=dict, blank=True)
    raw_truncated = models.BooleanField(default=False)
    # Marks the rows one ingestion call inserted, so that call can tell its own inserts from rows
    # a concurrent delivery of the same message committed first (see actions.ingest_messages).
    ingest_batch = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connector", "external_id"], name="message_unique_per_connector")
        ]
        indexes = [
            models.Index(fields=["received_at"], name="message_received_idx"),
            models.Index(fields=["sent_at"], name="message_sent_idx"),
            models.Index(fields=["connector", "sent_at"], name="message_connector_sent_idx"),
            models.Index(fields=["conversation", "sent_at"], name="message_conversation_sent_idx"),
            models.Index(fields=["author", "sent_at"], name="message_author_sent_idx"),
            # Replies stored before their parent, looked up by ingest_messages on every call;
            # without it that lookup scans every message of the connector.
            models.Index(
                fields=["connector", "parent_external_id"],
                name="message_orphan_reply_idx",
                condition=models.Q(parent__isnull=True) & ~models.Q(parent_external_id=""),
            ),
        ]
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"{self.channel}:{self.external_id}"


class AuditEvent(models.Model):
    """Who changed which connector or credential, when, and what changed (listening.audit).
    Secrets never appear: a credential change names the keys that changed, not their values."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_name = models.CharField(max_length=150, help_text="The username then, or 'system' for commands.")
    action = models.CharField(max_length=40)
    connector = models.ForeignKey(Connector, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    connector_label = models.CharField(max_length=200, help_text="The connector's name and slug then.")
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["connector", "-created_at"], name="audit_connector_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.connector_label}"


def attachment_path(instance: Attachment, filename: str) -> str:
    """Content-addressed: the same bytes always land on the same path, so a retried ingestion
    rewrites the file it already wrote instead of leaving a second copy."""
    return f"attachments/{instance.sha256[:2]}/{instance.sha256}"


class Attachment(models.Model):
    """A file that came with a message (an email attachment). One that was not kept (too large)
    has no file and says why in `skipped_reason`."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127)
    size = models.PositiveBigIntegerField(help_text="Bytes, as received (or as announced when not kept).")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    file = models.FileField(upload_to=attachment_path, max_length=200, blank=True, default="")
    skipped_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message", "id"]

    def __str__(self) -> str:
        return self.filename


# --- Signals: typed events about a customer that are not messages (listening.signal_actions) -------


class Device(models.Model):
    """A device known to belong to a customer: an MQTT topic or a signal that names only the device
    is matched through it. Bound when a signal names both the device and a known customer."""

    device_id = models.CharField(max_length=120, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="devices")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.device_id


class Signal(models.Model):
    """One event about a customer (a device error, a failed payment, a shipped order...), stored
    once per (source, external_id) and never changed: rules and the case page read it, and only
    retention (prune_signals) deletes it. Its `type` is one of listening.signal_types."""

    source = models.CharField(max_length=80, help_text="Where it came from: webhook:<slug>, api, mqtt, csv.")
    external_id = models.CharField(max_length=255)
    type = models.CharField(max_length=40)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="signals")
    device_id = models.CharField(max_length=120, blank=True, default="")
    occurred_at = models.DateTimeField(help_text="The source's time.")
    received_at = models.DateTimeField(default=timezone.now, help_text="When CXM stored it.")
    payload = models.JSONField(default=dict, blank=True)
    # Tells one ingestion call's inserts from a concurrent delivery of the same ids (as Message).
    ingest_batch = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "external_id"], name="signal_unique_per_source")]
        indexes = [
            models.Index(fields=["customer", "type", "occurred_at"], name="signal_customer_type_idx"),
            models.Index(fields=["device_id", "type", "occurred_at"], name="signal_device_type_idx",
                         condition=~models.Q(device_id="")),
            models.Index(fields=["received_at"], name="signal_received_idx"),
        ]
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.type} {self.external_id}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("signals are append-only")
        super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        from listening.signal_types import SIGNAL_TYPES

        kind = SIGNAL_TYPES.get(self.type)
        return kind.describe(self.payload) if kind else self.type


class SignalRejection(models.Model):
    """A signal that could not be stored, from an entry point that has no one to answer a 4xx to
    (MQTT, a CSV file): kept for the admins with its reason, a bounded excerpt, and nothing else."""

    source = models.CharField(max_length=80)
    external_id = models.CharField(max_length=255, blank=True, default="")
    reason = models.CharField(max_length=300)
    excerpt = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class CustomerTag(models.Model):
    """A word on a customer, put there by a signal rule (or a person): "device-trouble"."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=40)
    added_by = models.CharField(max_length=160, blank=True, default="", help_text="The rule or person.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["customer", "name"], name="customer_tag_unique")]

    def __str__(self) -> str:
        return self.name


# --- The living profile: attributes admins define (listening.attributes), saved segments (responses.segments)


class AttributeKind(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    DATE = "date", "Date"
    CHOICE = "choice", "Choice"


class AttributeDefinition(models.Model):
    """A custom attribute admins add to every customer ("Plan", "Renewal date"). Values live in
    Customer.attributes under `key`. A signal of `signal_type` whose payload has `signal_field`
    sets the value (checked like any other), so a device or billing system keeps it current."""

    key = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=10, choices=AttributeKind.choices)
    choices = models.JSONField(default=list, blank=True)
    signal_type = models.CharField(max_length=40, blank=True, default="")
    signal_field = models.CharField(max_length=60, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "key"]

    def __str__(self) -> str:
        return self.name


class Segment(models.Model):
    """A saved filter over customers' tier, attributes and signals ("premium customers with 3+
    device errors this week"); its `definition` is checked and run by responses.segments."""

    name = models.CharField(max_length=120, unique=True)
    definition = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
