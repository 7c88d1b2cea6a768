"""Replies go back out on the customer's channel.

`send_reply` stores a Reply with an idempotency key (the same key twice is the same reply: a
double click or a retried request sends once) and enqueues `responses.deliver_reply` on commit.
`deliver` makes the provider call under a lease on the row, so two workers never call the
provider for one reply; it stores the delivered text as an outbound Message in the thread.
"""

from __future__ import annotations

import logging
import random
import re
import string
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from listening.connectors.base import DeliveryStatus, OutboundReply, ReplyRules
from listening.exceptions import ProviderError
from listening.models import AttributeDefinition, Direction, Message
from listening.polling import save_rate_limit
from responses import access, event_types, events, proactive, signals
from responses.exceptions import CaseNotFound, Conflict, InvalidRequest
from responses.models import CannedResponse, Case, CaseStatus, Reply, SlaState
from responses.summaries import case_summary, reply_dict

log = logging.getLogger(__name__)

# A ceiling for any channel; each channel's own limit is in its connector's reply rules.
MAX_REPLY_CHARS = 40_000
MAX_ATTEMPTS = 6


def send_reply(user, case_id, text: str, *, idempotency_key: str = "", resolve: bool = False) -> Reply:
    """An agent's reply. With `resolve`, the case is resolved once the reply is delivered."""
    access.require_reply(user)
    text = _clean(text)
    key = _key(idempotency_key)
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        existing = Reply.objects.filter(idempotency_key=key).first()
        if existing is not None:
            if existing.case_id != case.pk:
                raise Conflict("this idempotency key was used for another case")
            return existing
        now = timezone.now()
        check_rules(channel_rules(case), text, now)
        reply = _create(case, text, key, author=user, resolve=resolve)
        changes = {"status": CaseStatus.PENDING if case.status != CaseStatus.RESOLVED else case.status,
                   "waiting_since": None, "sla_state": SlaState.NONE, "sla_due_at": None, "updated_at": now}
        if changes["status"] == CaseStatus.PENDING:
            changes["pending_since"] = now  # the customer's turn starts now (timed rules count from it)
        if case.first_response_at is None:
            changes["first_response_at"] = now
        if case.assignee_id is None:
            changes["assignee"] = user  # whoever answers owns the case
            changes["awaiting_assignment"] = False
        Case.objects.filter(pk=case.pk).update(**changes)
        for name, value in changes.items():
            setattr(case, name, value)
        events.emit(event_types.CASE_UPDATED, {"case": case_summary(case)}, team_id=case.team_id, case_id=case.pk)
    return reply


def send_automatic_reply(case: Case, canned: CannedResponse) -> Reply:
    """An acknowledgement sent by a routing rule, inside the routing transaction."""
    text = render_canned(canned.text, case, None)
    waiting = case.waiting_since.timestamp() if case.waiting_since else 0
    key = f"ack-{case.pk}-{waiting:.0f}"  # once per wait: a reopened case is acknowledged again
    existing = Reply.objects.filter(idempotency_key=key).first()
    return existing or _create(case, text, key, author=None, automatic=True)


def _create(case: Case, text: str, key: str, *, author, resolve: bool = False, automatic: bool = False) -> Reply:
    reply = Reply.objects.create(case=case, author=author, text=text, idempotency_key=key,
                                 in_reply_to=case.last_message, resolve_on_delivery=resolve, automatic=automatic)
    events.emit(event_types.REPLY_CREATED, {"reply": reply_dict(reply), "case_id": case.pk}, team_id=case.team_id,
                case_id=case.pk)
    transaction.on_commit(lambda: _enqueue(reply.pk))
    return reply


def _enqueue(reply_id: int, countdown: float = 0) -> None:
    """Ask for a delivery (responses.tasks enqueues it): the actions never import the tasks that
    import them."""
    try:
        signals.reply_due.send(sender=Reply, reply_id=reply_id, countdown=countdown)
    except Exception:  # broker down: the reply stays pending, and the sweep sends it later
        log.exception("could not enqueue delivery of reply %s", reply_id)


def retry_reply(user, reply_id) -> Reply:
    """An agent retries a failed reply (after reading why it failed)."""
    access.require_reply(user)
    try:
        reply_id = int(reply_id)
    except (TypeError, ValueError):
        raise CaseNotFound("no such reply")
    with transaction.atomic():
        reply = Reply.objects.select_for_update().filter(pk=reply_id).first()
        if reply is None:  # the same answer as for another team's reply: ids cannot be probed
            raise CaseNotFound("no such reply")
        case = access.get_case(user, reply.case_id)
        if reply.status != Reply.Status.FAILED:
            raise Conflict(f"this reply is {reply.status}, not failed")
        reply.status, reply.last_error, reply.attempts, reply.sending_until = Reply.Status.PENDING, "", 0, None
        reply.save(update_fields=["status", "last_error", "attempts", "sending_until"])
        events.emit(event_types.REPLY_UPDATED, {"reply": reply_dict(reply), "case_id": case.pk}, team_id=case.team_id,
                    case_id=case.pk)
        transaction.on_commit(lambda: _enqueue(reply.pk))
    return reply


@dataclass(frozen=True)
class ChannelRules:
    """A case's reply rules (the connector's, for its channel) and where its window stands."""

    channel: str
    can_reply: bool
    rules: ReplyRules
    last_inbound: datetime | None

    @property
    def window_ends(self) -> datetime | None:
        if self.rules.window_hours is None or self.last_inbound is None:
            return None
        return self.last_inbound + timedelta(hours=self.rules.window_hours)


def channel_rules(case: Case) -> ChannelRules:
    conversation = case.conversation
    backend = conversation.connector.get_backend()
    last = (conversation.messages.filter(direction=Direction.INBOUND).order_by("-sent_at")
            .values_list("sent_at", flat=True).first())
    return ChannelRules(conversation.channel, backend.can_reply, backend.reply_rules(conversation.channel), last)


def check_rules(found: ChannelRules, text: str, now) -> None:
    """Refuse, with the reason, a reply the channel would not carry: before it is stored or sent."""
    if not found.can_reply:
        raise InvalidRequest(f"replies cannot be sent on {found.channel}: this source only listens")
    if len(text) > found.rules.max_chars:
        raise InvalidRequest(f"{found.channel} replies are at most {found.rules.max_chars} characters; "
                             f"this one is {len(text)}")
    if found.rules.window_closed(found.last_inbound, now):
        hours = found.rules.window_hours
        raise InvalidRequest(f"the {hours:g}-hour reply window on {found.channel} closed "
                             f"{_ago(now - found.window_ends)} ago. {found.rules.when_closed}".strip())


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def _clean(text: str) -> str:
    text = (text or "").replace("\x00", "").strip()
    if not text:
        raise InvalidRequest("the reply is empty")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidRequest(f"the reply is {len(text)} characters; at most {MAX_REPLY_CHARS}")
    return text


def _key(value: str) -> str:
    value = (value or "").strip()
    if not value:
        return uuid.uuid4().hex
    if len(value) > 80 or any(c not in string.ascii_letters + string.digits + "-_:." for c in value):
        raise InvalidRequest("idempotency key: up to 80 letters, digits, '-', '_', ':' or '.'")
    return value


# --- Delivery (run by the responses.deliver_reply task) ---------------------------------------
class Outcome:
    DONE = "done"  # delivered, failed for good, or nothing to do
    RETRY = "retry"
    BUSY = "busy"  # another worker holds the lease


def deliver(reply_id: int) -> tuple[str, float]:
    """Deliver one reply. Returns (outcome, seconds to wait before retrying)."""
    reply = _claim(reply_id)
    if isinstance(reply, str):
        return reply, 0.0
    case = reply.case
    connector = case.conversation.connector
    outbound = OutboundReply(
        text=reply.text, channel=case.conversation.channel,
        recipient_id=case.conversation.contact.external_id if case.conversation.contact else "",
        thread_id=case.conversation.external_id,
        in_reply_to=reply.in_reply_to.external_id if reply.in_reply_to else "",
        idempotency_key=reply.idempotency_key, subject=case.conversation.subject,
    )
    outbound = proactive.outbound(reply, outbound)  # a first message: its template, recipient and thread
    backend = None
    try:
        backend = connector.get_backend()
        external_id = backend.send(outbound)
    except ProviderError as exc:
        return _failed_attempt(reply, exc)
    except Exception as exc:  # a bug or misconfiguration: fail visibly, never crash the worker
        log.exception("sending reply %s failed", reply.pk)
        _finish_failed(reply, f"could not send: {type(exc).__name__}: {str(exc)[:300]}")
        return Outcome.DONE, 0.0
    finally:
        save_rate_limit(connector.pk, backend)
    _delivered(reply, str(external_id or reply.idempotency_key))
    return Outcome.DONE, 0.0


def _claim(reply_id: int) -> Reply | str:
    lease = timedelta(seconds=settings.PROVIDER_HTTP_TIMEOUT * 2 + 30)
    with transaction.atomic():
        reply = (Reply.objects.select_for_update(of=("self",))
                 .select_related("case__conversation__connector", "case__conversation__contact", "in_reply_to")
                 .filter(pk=reply_id).first())
        if reply is None or reply.status != Reply.Status.PENDING:
            return Outcome.DONE
        now = timezone.now()
        if reply.sending_until and reply.sending_until > now:
            return Outcome.BUSY
        connector = reply.case.conversation.connector
        if reply.sending_until and not connector.get_backend().idempotent_sends:
            # A worker died during the provider call: the message may be out. Sending again could
            # reach the customer twice, so stop and let the agent check the channel.
            _finish_failed(reply, "delivery outcome unknown: the sender stopped during the provider call; "
                                  "check the conversation on the channel before retrying")
            return Outcome.DONE
        reply.sending_until = now + lease
        reply.attempts += 1
        reply.next_attempt_at = None
        reply.save(update_fields=["sending_until", "attempts", "next_attempt_at"])
    return reply


def _failed_attempt(reply: Reply, exc: ProviderError) -> tuple[str, float]:
    if exc.retryable and reply.attempts < MAX_ATTEMPTS:
        delay = exc.retry_after if exc.retry_after is not None else backoff(reply.attempts)
        Reply.objects.filter(pk=reply.pk).update(sending_until=None, last_error=str(exc.reason)[:1000],
                                                 next_attempt_at=timezone.now() + timedelta(seconds=delay))
        return Outcome.RETRY, delay
    reason = exc.reason if not exc.retryable else f"gave up after {reply.attempts} attempts: {exc.reason}"
    _finish_failed(reply, reason)
    return Outcome.DONE, 0.0


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 2, 4, 8... seconds (capped at 5 minutes)."""
    return random.uniform(0.5, 1.0) * min(300.0, 2.0 ** attempt)


def _finish_failed(reply: Reply, reason: str) -> None:
    with transaction.atomic():
        Reply.objects.filter(pk=reply.pk).update(status=Reply.Status.FAILED, last_error=reason[:1000],
                                                 sending_until=None)
        reply.status, reply.last_error = Reply.Status.FAILED, reason[:1000]
        events.emit(event_types.REPLY_UPDATED, {"reply": reply_dict(reply), "case_id": reply.case_id},
                    team_id=reply.case.team_id, case_id=reply.case_id)


def _delivered(reply: Reply, external_id: str) -> None:
    case = reply.case
    now = timezone.now()
    with transaction.atomic():
        # The provider may already have echoed it back to us (same id): then that row is it.
        message, _ = Message.objects.get_or_create(
            connector_id=case.conversation.connector_id, external_id=external_id[:255],
            defaults={"channel": case.conversation.channel, "direction": Direction.OUTBOUND,
                      "conversation": case.conversation, "text": reply.text, "sent_at": now, "received_at": now,
                      "parent": reply.in_reply_to,
                      "parent_external_id": reply.in_reply_to.external_id if reply.in_reply_to else ""},
        )
        Reply.objects.filter(pk=reply.pk).update(status=Reply.Status.DELIVERED, external_id=external_id[:255],
                                                 message=message, delivered_at=now, sending_until=None,
                                                 last_error="")
        reply.status, reply.external_id, reply.message, reply.delivered_at = (
            Reply.Status.DELIVERED, external_id, message, now)
        events.emit(event_types.REPLY_UPDATED, {"reply": reply_dict(reply), "case_id": case.pk}, team_id=case.team_id,
                    case_id=case.pk)
        if reply.resolve_on_delivery:
            from responses.cases import resolve_after_delivery

            resolve_after_delivery(case.pk)


def pending_replies_to_resend(lost_after_seconds: int = 120) -> list[int]:
    """Pending replies due another attempt, or whose task was lost (broker down at enqueue,
    worker killed), and that no worker is sending now."""
    now = timezone.now()
    due = Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True,
                                          created_at__lt=now - timedelta(seconds=lost_after_seconds))
    return list(Reply.objects.filter(due, status=Reply.Status.PENDING).exclude(sending_until__gt=now)
                .order_by("id").values_list("id", flat=True)[:500])


# --- Canned responses ------------------------------------------------------------------------
PLACEHOLDERS = ("customer_name", "customer_first_name", "agent_name", "agent_first_name", "brand")


def render_canned(template: str, case: Case, agent) -> str:
    """Fill the placeholders; unknown `{names}` and stray braces stay as typed."""
    contact = case.conversation.contact
    customer = (contact.display_name or contact.handle) if contact else ""
    # A user without names signs with the username as a name ("maria.k" -> "Maria K"), never "agent".
    handle = agent.get_username().split("@")[0].replace(".", " ").replace("_", " ").title() if agent else ""
    agent_name = (agent.get_full_name() or handle) if agent else ""
    values = {
        "customer_name": customer or "there",
        "customer_first_name": (customer.split()[0] if customer else "there"),
        "agent_name": agent_name,
        "agent_first_name": ((agent.first_name or handle).split() or [""])[0] if agent else "",
        "brand": settings.CXM_BRAND_NAME,
    }
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return _profile_placeholders(out, contact.customer if contact else None)


# {customer.tier} and {customer.attr.<key>}: the customer's profile (listening.attributes).
_PROFILE_RE = re.compile(r"\{customer\.(tier|attr\.([a-z][a-z0-9_]{0,39}))\}")


def _profile_placeholders(text: str, customer) -> str:
    """A defined attribute the customer has no value for reads as nothing; an unknown key stays
    as typed, like any unknown placeholder, so a typo shows in the preview."""
    if "{customer." not in text:
        return text
    keys = set(AttributeDefinition.objects.values_list("key", flat=True))

    def fill(match: re.Match) -> str:
        if match[1] == "tier":
            return customer.get_tier_display() if customer and customer.tier else ""
        if match[2] not in keys:
            return match[0]
        value = (customer.attributes or {}).get(match[2]) if customer else None
        return "" if value is None else str(value)

    return _PROFILE_RE.sub(fill, text)


# Reports arrive out of order and more than once: one is applied only if it moves the message
# forward, so a late "sent" never undoes "delivered" and a repeated report changes nothing.
DELIVERY_RANK = {"queued": 0, "sent": 1, "delivered": 2, "failed": 2, "read": 3}


def apply_delivery_status(connector_id: int, status: DeliveryStatus) -> bool:
    """Apply a provider's report to the Reply it sent as `status.external_id`; True if the Reply
    changed. The reply is found through its outbound Message (unique per connector and id), where
    the last state applied is kept, in raw["delivery"]."""
    rank = DELIVERY_RANK.get(status.status)
    if rank is None:
        return False
    with transaction.atomic():
        reply = (Reply.objects.select_for_update(of=("self",)).select_related("case", "message")
                 .filter(message__connector_id=connector_id, message__external_id=status.external_id).first())
        if reply is None or reply.status == Reply.Status.PENDING:
            return False  # not a reply of ours, or an earlier attempt's id while the agent retries it
        raw = reply.message.raw if isinstance(reply.message.raw, dict) else {}
        applied = raw.get("delivery") if isinstance(raw.get("delivery"), dict) else {}
        current = DELIVERY_RANK.get(applied.get("status"), -1)
        if rank <= current:
            return False
        now, delivered = timezone.now(), DELIVERY_RANK["delivered"]
        Message.objects.filter(pk=reply.message_id).update(
            raw={**raw, "delivery": {"status": status.status, "at": now.isoformat(), "error": status.error}})
        if status.status == "failed":
            changes = {"status": Reply.Status.FAILED,
                       "last_error": (status.error or "the provider reports that the message failed")[:1000]}
        elif rank >= delivered and (current < delivered or reply.status != Reply.Status.DELIVERED):
            changes = {"status": Reply.Status.DELIVERED, "delivered_at": now, "last_error": ""}
        else:
            return False  # queued or sent: the reply already shows it went out
        Reply.objects.filter(pk=reply.pk).update(**changes)
        for name, value in changes.items():
            setattr(reply, name, value)
        events.emit(event_types.REPLY_UPDATED, {"reply": reply_dict(reply), "case_id": reply.case_id},
                    team_id=reply.case.team_id, case_id=reply.case_id)
    return True
