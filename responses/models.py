"""Love: who works what (teams, queues, rules, cases), what they said (replies, notes) and what
their consoles were told (console events).

A Case carries the care workflow of one conversation. ConsoleEvent is the truth a console
catches up from; the channel layer only rings the doorbell.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from listening import crypto
from listening.models import Connector, Conversation, Customer, Message


class Role(models.TextChoices):
    AGENT = "agent", "Agent"
    SUPERVISOR = "supervisor", "Supervisor"
    BRAND_MANAGER = "brand_manager", "Brand manager"
    ADMIN = "admin", "Admin"


class Presence(models.TextChoices):
    AVAILABLE = "available", "Available"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class Team(models.Model):
    """Teams own connectors (the conversations arriving on them) and queues. A member sees the
    cases of their teams and nothing else."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="cxm_teams", blank=True)
    connectors = models.ManyToManyField(Connector, related_name="teams", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentProfile(models.Model):
    """A user's role, presence and routing skills."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cxm_profile")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    presence = models.CharField(max_length=10, choices=Presence.choices, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(default=timezone.now)
    capacity = models.PositiveSmallIntegerField(default=5, help_text="Open cases assigned at once, at most.")
    languages = models.JSONField(default=list, blank=True, help_text="Language codes; empty: any.")
    channels = models.JSONField(default=list, blank=True, help_text="Channels handled; empty: any.")
    last_assigned_at = models.DateTimeField(null=True, blank=True, help_text="Round-robin order.")

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class Queue(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    lane = models.CharField(max_length=12, blank=True, default="", help_text="Default queue of this lane.")
    sla_minutes = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first response.")
    auto_assign = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["team_id", "position", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="queue_slug_per_team")]

    def __str__(self) -> str:
        return f"{self.team} / {self.name}"


class RoutingRule(models.Model):
    """Conditions (all must hold) and actions, evaluated in `position` order. The schema of both
    lives in responses.rules, which validates them on save."""

    name = models.CharField(max_length=120)
    position = models.PositiveIntegerField(default=100)
    enabled = models.BooleanField(default=True)
    conditions = models.JSONField(default=list, blank=True)
    actions = models.JSONField(default=dict, blank=True)
    stop = models.BooleanField(default=False, help_text="Evaluate no further rules after this one matches.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from responses.rules import validate_rule

        validate_rule(self.conditions, self.actions)


class CannedResponse(models.Model):
    """A reply template. Placeholders: {customer_name}, {customer_first_name}, {agent_name},
    {agent_first_name}, {brand}."""

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="canned")
    title = models.CharField(max_length=120)
    shortcut = models.SlugField(max_length=40, blank=True, default="")
    text = models.TextField(max_length=4000)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class CaseStatus(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    PENDING = "pending", "Pending customer"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


ACTIVE_STATUSES = (CaseStatus.NEW, CaseStatus.OPEN, CaseStatus.PENDING)


class SlaState(models.TextChoices):
    NONE = "", "No SLA"
    OK = "ok", "On time"
    NEAR = "near", "Near breach"
    BREACHED = "breached", "Breached"


class Case(models.Model):
    conversation = models.OneToOneField(Conversation, on_delete=models.CASCADE, related_name="case")
    # Copied from the conversation so the care dashboards filter cases without a join.
    connector = models.ForeignKey(Connector, null=True, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=40, blank=True, default="")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="cases")
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="cxm_cases"
    )
    status = models.CharField(max_length=10, choices=CaseStatus.choices, default=CaseStatus.NEW)
    lane = models.CharField(max_length=12, blank=True, default="")
    priority = models.FloatField(default=0.0)
    sla_minutes = models.PositiveIntegerField(null=True, blank=True)
    sla_due_at = models.DateTimeField(null=True, blank=True)
    # From here the SLA is near breach; stored because business hours make it no fixed span before
    # the due time, and the beat asks for it with an index instead of recomputing every case.
    sla_near_at = models.DateTimeField(null=True, blank=True)
    sla_state = models.CharField(max_length=10, choices=SlaState.choices, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    awaiting_assignment = models.BooleanField(default=False, help_text="In the hold queue: no agent had room.")
    # The first inbound message not yet answered: what the wait time and the SLA count from.
    waiting_since = models.DateTimeField(null=True, blank=True)
    last_message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    opened_at = models.DateTimeField(default=timezone.now)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # When the case last went pending (waiting on the customer), None while it is not: timed rules
    # count from here. Kept by save() below; a queryset.update() that sets the status sets it too.
    pending_since = models.DateTimeField(null=True, blank=True)
    # Snoozed cases leave the active views until snoozed_until (None: until the customer writes);
    # a customer message wakes them sooner (responses.snooze).
    snoozed = models.BooleanField(default=False)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["snoozed_until"], name="case_snooze_due_idx", condition=models.Q(snoozed=True)),
            models.Index(fields=["team", "status", "-priority"], name="case_inbox_idx"),
            models.Index(fields=["assignee", "status"], name="case_assignee_idx"),
            models.Index(fields=["awaiting_assignment", "opened_at"], name="case_hold_idx"),
            models.Index(fields=["status", "sla_due_at"], name="case_sla_idx"),
            models.Index(fields=["status", "sla_near_at"], name="case_sla_near_idx"),
            models.Index(fields=["team", "status", "waiting_since"], name="case_waiting_idx"),
            models.Index(fields=["team", "status", "pending_since"], name="case_pending_idx"),
            models.Index(fields=["opened_at"], name="case_opened_idx"),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        # pending_since follows the status wherever it is changed through save(), so no caller
        # can forget it; it keeps its value while the case stays pending.
        if "status" in self.__dict__:
            pending = self.status == CaseStatus.PENDING
            if pending != (self.pending_since is not None):
                self.pending_since = timezone.now() if pending else None
                if kwargs.get("update_fields") is not None:
                    kwargs["update_fields"] = {*kwargs["update_fields"], "pending_since"}
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class Reply(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="replies")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    text = models.TextField()
    idempotency_key = models.CharField(max_length=80, unique=True)
    in_reply_to = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    resolve_on_delivery = models.BooleanField(default=False)
    automatic = models.BooleanField(default=False, help_text="Sent by a rule (auto-acknowledge).")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    external_id = models.CharField(max_length=255, blank=True, default="")
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="reply"
    )
    # Set while a worker holds the provider call: a second worker never sends the same reply.
    sending_until = models.DateTimeField(null=True, blank=True)
    # When a retryable failure may be tried again; the sweep resends from here if a task is lost.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="reply_pending_idx"),
            models.Index(fields=["created_at"], name="reply_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Reply {self.pk} ({self.status})"


class Note(models.Model):
    """A private note on a case; @mentions notify the mentioned users."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    text = models.TextField(max_length=4000)
    mentions = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="cxm_mentions")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Note {self.pk} on case {self.case_id}"


class ConsoleEvent(models.Model):
    """One change a console should see, written in the transaction that made the change. The id
    only grows: a console that reconnects asks for everything after the last id it saw. Events go
    to a team's members, or to one user (a mention)."""

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="+")
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["team", "id"], name="event_team_idx"),
            models.Index(fields=["user", "id"], name="event_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pk} {self.type}"

    def as_dict(self) -> dict:
        return {"id": self.pk, "type": self.type, "case_id": self.case_id, "at": self.created_at.isoformat(),
                **self.payload}


class EventHorizon(models.Model):
    """One row: events up to this id were pruned. A console asking to catch up from before it is
    told to reload instead of silently missing them."""

    pruned_through = models.BigIntegerField(default=0)
    pruned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"pruned through {self.pruned_through}"


# --- The REST API's tokens (responses.api) ----------------------------------------------------------


class ApiToken(models.Model):
    """A bearer token for /api/v1/. Only the SHA-256 of the token is stored: the token itself is
    shown once, when it is made. A token acts as its user (access rules are the user's, as in the
    console) narrowed by its scopes. Personal tokens are made by a user for themselves; service
    tokens are made by an admin for a service account, for integrations that outlive a person."""

    class Kind(models.TextChoices):
        PERSONAL = "personal", "Personal"
        SERVICE = "service", "Service"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cxm_api_tokens")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERSONAL)
    name = models.CharField(max_length=120)
    # The first characters after "cxm_": enough to tell tokens apart in a list, useless to an attacker.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole token, hex.")
    scopes = models.JSONField(default=list, help_text='e.g. ["cases:read", "cases:write"]')
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (cxm_{self.prefix}…)"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class ApiIdempotencyKey(models.Model):
    """What a write sent with an Idempotency-Key answered, kept so a retry of the same request gets
    the same answer and a different request under the same key is refused (Stripe's rule)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=80)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="api_idempotency_key_per_user")]

    def __str__(self) -> str:
        return self.key


# --- Outbound webhooks (responses.outbound) ---------------------------------------------------------


class WebhookSubscription(models.Model):
    """An admin's URL that is told about events (responses.outbound.EVENT_TYPES). Signed with a
    secret shown once and stored encrypted; switched off after too many failures in a row."""

    name = models.CharField(max_length=120)
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class WebhookDelivery(models.Model):
    """One event for one subscription: its log line. Sent in id order per (subscription,
    conversation), retried with backoff until a day has passed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed for good"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(unique=True, help_text="Sent as X-CXM-Delivery: receivers drop duplicates by it.")
    event_type = models.CharField(max_length=40)
    # Deliveries with the same key go out in order; 0: no order needed.
    order_key = models.BigIntegerField(default=0)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sending_until = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx"),
            models.Index(fields=["subscription", "order_key", "id"], name="webhook_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.subscription_id} ({self.status})"


crypto.encrypted_column("responses.WebhookSubscription", "secret_encrypted")  # re-encrypted by rotate_credentials


# --- Case actions: the case's audit trail, snooze, macros, merges (responses.snooze/macros/merge) ---


class CaseActivity(models.Model):
    """One thing done to a case that is not a message, reply or note (snoozed, woken, a macro
    applied, merged, unmerged): shown on the case's timeline, in time order with the messages."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=30)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                           related_name="+")
    # Plain words and ids only: the timeline renders `text` as is (autoescaped).
    text = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["case", "created_at"], name="case_activity_idx")]

    def __str__(self) -> str:
        return f"{self.kind} on case {self.case_id}"


class Macro(models.Model):
    """Several case actions applied with one click. `actions` is a list of {"type": ...} steps,
    validated by responses.macros (reply text with placeholders, tags, status, assignee,
    priority). Team-scoped like canned responses; a macro with no team is for every team."""

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="macros")
    title = models.CharField(max_length=120)
    actions = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return self.title


class MergeRecord(models.Model):
    """Case `source` merged into `target`: what the merge changed, so that undo restores exactly.
    `before` holds the source case's fields as they were; `customers` the customer merge done
    with it (the removed customer's fields and the contacts moved), if any."""

    target = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="merged_in")
    source = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="merged_into")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                           related_name="+")
    before = models.JSONField(default=dict)
    customers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A case is merged into at most one other at a time.
            models.UniqueConstraint(fields=["source"], condition=models.Q(undone_at__isnull=True),
                                    name="merge_one_live_per_source"),
        ]

    def __str__(self) -> str:
        return f"case {self.source_id} -> {self.target_id}"


# --- Rules over signals (responses.signal_rules) -----------------------------------------------------


class SignalRule(models.Model):
    """A stateful rule over a customer's (or a device's) signals. Kinds:
    - count: `threshold` signals of `signal_type` within `window_minutes`;
    - followed_by_negative: a signal of `signal_type`, then a negative message from the customer
      within `window_minutes`;
    - absence: no signal of `signal_type` for `absence_days` (checked by beat).
    `actions` (validated by responses.signal_rules): open_case, priority, tag, alert."""

    class Kind(models.TextChoices):
        COUNT = "count", "Several signals in a window"
        FOLLOWED_BY_NEGATIVE = "followed_by_negative", "A signal, then an unhappy message"
        ABSENCE = "absence", "No signal for days"

    class Per(models.TextChoices):
        CUSTOMER = "customer", "Customer"
        DEVICE = "device", "Device"

    name = models.CharField(max_length=120)
    enabled = models.BooleanField(default=True)
    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.COUNT)
    signal_type = models.CharField(max_length=40)
    per = models.CharField(max_length=10, choices=Per.choices, default=Per.CUSTOMER)
    threshold = models.PositiveIntegerField(default=1)
    window_minutes = models.PositiveIntegerField(default=60)
    absence_days = models.PositiveIntegerField(default=0)
    actions = models.JSONField(default=dict)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="Whose Care queue gets the case; empty: the team of the customer's channel.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class SignalRuleState(models.Model):
    """A rule's memory for one key (customer or device): the newest timestamps inside the window
    (at most `threshold` of them, which is all a count needs), the last matching signal, and until
    when a firing silences the key, so one burst fires once. Updated per event; survives restarts."""

    rule = models.ForeignKey(SignalRule, on_delete=models.CASCADE, related_name="states")
    key = models.CharField(max_length=140)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    recent = models.JSONField(default=list)  # [[epoch seconds, signal id], ...] oldest first
    last_at = models.DateTimeField(null=True, blank=True)
    last_signal_id = models.BigIntegerField(null=True, blank=True)
    fired_until = models.DateTimeField(null=True, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "key"], name="signal_rule_state_unique")]
        indexes = [models.Index(fields=["rule", "last_at"], name="signal_rule_state_last_idx")]

    def __str__(self) -> str:
        return f"{self.rule_id}:{self.key}"


class SignalRuleFiring(models.Model):
    """One time a rule fired for a key: the signals that made it fire (the case's reason), what it
    did, and the case it opened or raised."""

    rule = models.ForeignKey(SignalRule, on_delete=models.CASCADE, related_name="firings")
    key = models.CharField(max_length=140)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="signal_firings")
    signal_ids = models.JSONField(default=list)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=300)
    done = models.JSONField(default=list, blank=True)
    fired_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        indexes = [models.Index(fields=["customer", "-fired_at"], name="signal_firing_customer_idx")]

    def __str__(self) -> str:
        return f"{self.rule} fired for {self.key}"


# --- Business calendars and timed rules (responses.calendars, business_time, timed_rules) ---------


class BusinessCalendar(models.Model):
    """A team's open hours: SLAs and timed rules count only these minutes. No calendar: 24/7.
    `hours` is seven lists (Monday first) of ["HH:MM", "HH:MM"] intervals, validated by
    responses.calendars."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="calendar")
    time_zone = models.CharField(max_length=64, default="UTC")
    hours = models.JSONField(default=list)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.team} ({self.time_zone})"


class Holiday(models.Model):
    """A closed local date of a calendar."""

    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["calendar", "date"], name="holiday_once_per_date")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


class TimedRule(models.Model):
    """When a team's case has waited `after_minutes` business minutes in a state, do something,
    once per wait (responses.timed_rules, run by beat)."""

    class Trigger(models.TextChoices):
        PENDING = "pending", "Waiting on the customer"
        WAITING = "waiting", "Waiting on an agent"

    class Action(models.TextChoices):
        CLOSE = "close", "Close the case (with a message)"
        ESCALATE = "escalate", "Escalate (raise the priority)"
        REASSIGN = "reassign", "Move to a queue (unassigned)"
        NOTIFY = "notify", "Notify the team's supervisors"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="timed_rules")
    name = models.CharField(max_length=120)
    enabled = models.BooleanField(default=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    after_minutes = models.PositiveIntegerField(help_text="Business minutes in that state.")
    action = models.CharField(max_length=10, choices=Action.choices)
    canned = models.ForeignKey(CannedResponse, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               help_text="Close: the message sent to the customer.")
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                              help_text="Move to a queue: which one.")
    priority_boost = models.FloatField(default=0.3, help_text="Escalate: added to the priority (0 to 1).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team_id", "after_minutes", "id"]

    def __str__(self) -> str:
        return self.name


class TimedRuleRun(models.Model):
    """A rule fired on a case for one wait (`since`: the wait's start). The unique constraint is
    what makes a rule fire once per wait, however often and however many beats run it."""

    rule = models.ForeignKey(TimedRule, on_delete=models.CASCADE, related_name="runs")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    since = models.DateTimeField()
    fired_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "case", "since"], name="timed_rule_once_per_wait")]

    def __str__(self) -> str:
        return f"rule {self.rule_id} on case {self.case_id}"


# --- Saved views (responses.saved_views) --------------------------------------------------------


class SavedView(models.Model):
    """A search kept under a name: text and filters (responses.search), shown in the console's
    sidebar with its count. Personal, or shared with a team by one of its supervisors."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cxm_saved_views")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="saved_views",
                             help_text="Shared with this team's members; empty: only the owner sees it.")
    name = models.CharField(max_length=60)
    query = models.CharField(max_length=500, blank=True, default="")
    filters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="saved_view_name_per_owner")]

    def __str__(self) -> str:
        return self.name


# --- Proactive messages (responses.proactive) ----------------------------------------------------


class ProactiveMessage(models.Model):
    """A first message sent to a customer who had not written (by an agent from a case, or by a
    signal rule): its Reply goes out through the normal delivery. `key` makes a retry the same
    message; the frequency cap counts these rows per customer."""

    key = models.CharField(max_length=80, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="proactive_messages")
    reply = models.OneToOneField(Reply, on_delete=models.CASCADE, related_name="proactive")
    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=40)
    recipient_id = models.CharField(max_length=255, help_text="The Contact's external id on the channel.")
    # The provider's thread to send on: a proactive case's own conversation is new to the provider.
    thread_id = models.CharField(max_length=255, blank=True, default="")
    template_name = models.CharField(max_length=512, blank=True, default="")
    template_language = models.CharField(max_length=10, blank=True, default="")
    template_values = models.JSONField(default=list, blank=True)
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    rule = models.ForeignKey(SignalRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="proactive_customer_idx")]

    def __str__(self) -> str:
        return f"proactive {self.key} to customer {self.customer_id}"


class RoutingClaim(models.Model):
    """A classification that routing has handled (responses.routing): written in the transaction
    that routes its message, so a routing task run twice (redelivered after its worker died, or
    re-enqueued by the sweep) routes each classification once, and the sweep finds the ones whose
    task was lost (responses.tasks.sweep_unrouted). A re-classification is a new row: routed again."""

    classification = models.OneToOneField("learning.Classification", primary_key=True, on_delete=models.CASCADE,
                                          related_name="+")
    routed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"classification {self.classification_id} routed"
