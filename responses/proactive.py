"""Proactive messages: care writes first, to a customer who has not written.

`send_proactive_message` (an agent, from a case) and `send_for_rule` (a signal rule's action) store
a Reply on the case, which goes out through the normal delivery task (responses.replies.deliver),
with a ProactiveMessage beside it saying which template, values, recipient and provider thread to
use. Before anything is stored, in this order, each refusal with its reason:

- the customer opted out (Customer.proactive_opt_out): 409;
- the frequency cap: at most CXM_PROACTIVE_CAP per customer within CXM_PROACTIVE_CAP_HOURS: 429;
- the channel's rules, read from the connector class (ReplyRules): a source that only listens
  cannot carry it; outside the customer-service window (WhatsApp's 24 hours, counted from the
  customer's last message on that connector, or never opened) only an approved template of the
  connector's may go, with exactly its values; a text over the channel's length is refused: 400.

The same key twice is the same message (a double click, a retried request, a rule's retried
batch): the first is returned and nothing is sent again. Every send leaves a line on the case's
timeline (CaseActivity "proactive").
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from listening.connectors import presentation
from listening.connectors.base import OutboundReply, ReplyRules
from listening.connectors.templates import MessageTemplate
from listening.models import Contact, Conversation, Customer, Direction, Message
from responses import access, event_types, events, signals
from responses.exceptions import CaseNotFound, Conflict, InvalidRequest
from responses.models import (
    ACTIVE_STATUSES,
    Case,
    CaseActivity,
    CaseStatus,
    ProactiveMessage,
    Reply,
    SignalRule,
    SlaState,
)
from responses.summaries import case_summary, reply_dict

log = logging.getLogger(__name__)

PROACTIVE_THREAD_PREFIX = "proactive:"  # responses.signal_cases names a proactive case's conversation so
PROACTIVE_TAG = "proactive"  # on every proactive case (responses.signal_cases tags its own so)


class OptedOut(Conflict):
    code = "opted_out"


class Capped(Conflict):
    status_code = 429
    code = "frequency_cap"


@dataclass(frozen=True)
class Target:
    """Where a proactive message to a case's customer goes, and what that channel allows there."""

    customer: Customer
    contact: Contact
    connector_id: int
    channel: str
    thread_id: str
    can_send: bool
    rules: ReplyRules
    templates: tuple[MessageTemplate, ...]
    last_inbound: object  # datetime | None: the customer's last message on this connector

    @property
    def channel_name(self) -> str:
        return presentation(self.channel).label

    @property
    def channel_why(self) -> str:
        """Why the message goes on this channel, for the case page: a proactive case opens on the
        customer's preferred channel (responses.signal_cases), and a message goes on the case's."""
        customer = self.customer
        if customer.channel_override == self.channel:
            return "their preferred channel, chosen by an agent"
        if not customer.channel_override and customer.learned_channel == self.channel:
            return "their preferred channel, learned from where they last answered"
        if customer.preferred_channel:
            return f"this case's channel; they prefer {presentation(customer.preferred_channel).label}"
        return "this case's channel: no preferred channel is known yet"

    def window_open(self, now) -> bool:
        if self.rules.window_hours is None:
            return True
        return self.last_inbound is not None and not self.rules.window_closed(self.last_inbound, now)

    def template(self, name: str) -> MessageTemplate | None:
        wanted = (name or "").strip()
        return next((t for t in self.templates if t.key == wanted or t.name == wanted), None)


def target_for(case: Case) -> Target | None:
    """The case's customer on the case's channel, or None when the case has no known customer."""
    conversation = case.conversation
    contact = conversation.contact
    if contact is None or contact.customer_id is None:
        return None
    backend = conversation.connector.get_backend()
    last = (Message.objects.filter(author=contact, connector_id=conversation.connector_id, direction=Direction.INBOUND)
            .aggregate(last=Max("sent_at"))["last"])
    return Target(customer=contact.customer, contact=contact, connector_id=conversation.connector_id,
                  channel=conversation.channel, thread_id=_provider_thread(conversation),
                  can_send=backend.can_reply, rules=backend.reply_rules(conversation.channel),
                  templates=backend.templates() if backend.reply_rules(conversation.channel).templates else (),
                  last_inbound=last)


def _provider_thread(conversation: Conversation) -> str:
    """A proactive case's conversation is ours alone; the provider knows the customer's thread on
    the same connector (WhatsApp's "<number id>:<wa_id>"), so the message goes there."""
    if not conversation.external_id.startswith(PROACTIVE_THREAD_PREFIX):
        return conversation.external_id
    real = (Conversation.objects.filter(connector_id=conversation.connector_id, contact_id=conversation.contact_id)
            .exclude(external_id__startswith=PROACTIVE_THREAD_PREFIX).order_by("-last_message_at", "-id")
            .values_list("external_id", flat=True).first())
    return real or ""


def send_proactive_message(user, case_id, *, text: str = "", template: str = "", values=None,
                           key: str = "") -> ProactiveMessage:
    """An agent's proactive message on a case they can see: text while the channel's window is
    open, else an approved template with its values. Idempotent on `key` (required)."""
    access.require_reply(user)
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        return _send(case, text=text, template=template, values=values, key=key, by=user)


def send_to_customer(user, customer_id: int, *, channel: str = "", case_id=None, text: str = "",
                     template: str = "", values=None, key: str = "") -> ProactiveMessage:
    """A proactive message to a customer the user's teams have heard from (the REST API): on
    `case_id` if given (it must be the customer's), else on the customer's active case on the
    chosen channel, else on a new proactive case there (Care queue, tagged "proactive"). The
    channel is `channel` if given, else the customer's preferred one, else where they last wrote,
    among the sources the user's teams serve. The same checks as from a case page, in the same
    order; a refusal stores nothing, not even the case. Idempotent on `key`."""
    access.require_reply(user)
    key = _key(key)
    with transaction.atomic():
        existing = ProactiveMessage.objects.filter(key=key).select_related("reply").first()
        if existing is not None:
            if existing.customer_id != customer_id:
                raise Conflict("this key was used for a proactive message to another customer")
            return existing
        # Only a customer who wrote to a source of the user's teams exists for them (as the API's
        # customer routes): another team's customer is "no such customer", never their name.
        connectors = access.connector_ids(user)
        customer = (Customer.objects.filter(pk=customer_id, contacts__conversations__connector_id__in=connectors)
                    .distinct().first())
        if customer is None:
            raise CaseNotFound("no such customer")
        if case_id is not None:
            case = access.get_case(user, case_id, for_update=True)
            contact = case.conversation.contact
            if contact is None or contact.customer_id != customer.pk:
                raise InvalidRequest(f"case {case.pk} is not this customer's")
            if channel and channel != case.channel:
                raise InvalidRequest(f"case {case.pk} is on {presentation(case.channel).label}: a message on "
                                     f"{presentation(channel).label} goes on a case of its own (leave case out)")
        else:
            case = _case_on_channel(user, customer, channel, connectors)
        return _send(case, text=text, template=template, values=values, key=key, by=user)


def _case_on_channel(user, customer: Customer, channel: str, connectors: set[int]) -> Case:
    contacts = (Contact.objects.filter(customer=customer, conversations__connector_id__in=connectors)
                .distinct().order_by("-last_seen_at", "-id"))
    if channel:
        contact = contacts.filter(channel=channel).first()
        if contact is None:
            raise InvalidRequest(f"{customer} has not written on {presentation(channel).label} to a source your "
                                 f"teams serve: there is no {presentation(channel).label} address to write to")
    else:
        contact = ((contacts.filter(channel=customer.preferred_channel).first() if customer.preferred_channel else None)
                   or contacts.first())
        if contact is None:
            raise InvalidRequest(f"{customer} has not written to a source your teams serve: no channel to write on")
    active = (access.visible_cases(user).select_for_update()
              .filter(status__in=ACTIVE_STATUSES, conversation__contact=contact).order_by("-opened_at", "-id").first())
    if active is not None:
        return active
    latest = (Conversation.objects.filter(contact=contact, connector_id__in=connectors)
              .exclude(external_id__startswith=PROACTIVE_THREAD_PREFIX).order_by("-last_message_at", "-id").first())
    return _open_case(latest, user)


def _open_case(latest: Conversation, user) -> Case:
    from responses.teams import team_for_connector

    return open_proactive_case(
        latest, thread=f"{PROACTIVE_THREAD_PREFIX}api-{uuid.uuid4().hex}",
        subject=f"Proactive message from {user.get_full_name() or user.get_username()}",
        team=team_for_connector(latest.connector_id))


def open_proactive_case(latest: Conversation, *, thread: str, subject: str, team, priority: float = 0.5,
                        reach_out_within_sla: bool = False, preview: str = "", proactive: dict | None = None) -> Case:
    """A proactive case on a conversation of its own, on the connector where the customer last wrote,
    in the team's Care queue: where the customer's answer lands and the team sees why. With
    `reach_out_within_sla` (a rule fired and nothing was sent yet) care owes the customer a first
    message within the queue's SLA; `preview` and `proactive` go with the case.created event."""
    from responses import assignment
    from responses.teams import queue_for

    now = timezone.now()
    conversation = Conversation.objects.create(
        connector_id=latest.connector_id, channel=latest.channel, external_id=thread, contact_id=latest.contact_id,
        subject=subject[:300], started_at=now, last_message_at=now)
    queue = queue_for(team, "issue", "care")
    minutes = queue.sla_minutes if queue else None
    due = now + timedelta(minutes=minutes) if minutes and reach_out_within_sla else None
    case = Case.objects.create(conversation=conversation, connector_id=latest.connector_id, channel=latest.channel,
                               team=team, queue=queue, status=CaseStatus.NEW, lane="issue",
                               priority=min(1.0, max(0.0, priority)), tags=[PROACTIVE_TAG], opened_at=now,
                               sla_minutes=minutes, sla_due_at=due, sla_state=SlaState.OK if due else SlaState.NONE)
    summary = case_summary(case)
    if preview:
        summary["preview"] = preview
    payload = {"case": summary, **({"proactive": proactive} if proactive else {})}
    events.emit(event_types.CASE_CREATED, payload, team_id=team.pk, case_id=case.pk)
    if queue is not None and queue.auto_assign:
        assignment.auto_assign(case)
    return case


def send_for_rule(case: Case, rule: SignalRule, firing_id: int, values: list[str]) -> ProactiveMessage:
    """A signal rule's "send a proactive template" action, inside the firing's transaction, with the
    template's values already filled in (responses.signal_cases)."""
    spec = (rule.actions or {}).get("proactive") or {}
    return _send(case, template=spec.get("template", ""), values=values, key=f"rule-{rule.pk}-{firing_id}",
                 by=None, rule=rule)


def _send(case: Case, *, text: str = "", template: str = "", values=None, key: str, by,
          rule: SignalRule | None = None) -> ProactiveMessage:
    key = _key(key)
    existing = ProactiveMessage.objects.filter(key=key).select_related("reply").first()
    if existing is not None:
        if existing.case_id != case.pk:
            raise Conflict("this key was used for a proactive message on another case")
        return existing
    target = target_for(case)
    if target is None:
        raise InvalidRequest("this case has no known customer to write to")
    # Locking the customer serialises two senders, so the cap cannot be passed by a race.
    customer = Customer.objects.select_for_update().get(pk=target.customer.pk)
    now = timezone.now()
    _check_customer(customer, now)
    chosen, clean_values, body = _check_channel(target, text, template, values, now)
    reply = Reply.objects.create(case=case, author=by, text=body, idempotency_key=f"proactive-{key}"[:80],
                                 automatic=by is None)
    message = ProactiveMessage.objects.create(
        key=key, customer=customer, case=case, reply=reply, connector_id=target.connector_id, channel=target.channel,
        recipient_id=target.contact.external_id, thread_id=target.thread_id,
        template_name=chosen.name if chosen else "", template_language=chosen.language if chosen else "",
        template_values=list(clean_values), sent_by=by, rule=rule)
    how = f"the approved template “{chosen.name}” ({chosen.language})" if chosen else "a message"
    who = "a rule" if by is None else (by.get_full_name() or by.get_username())
    CaseActivity.objects.create(case=case, kind="proactive", by=by, text=(
        f"Proactive {target.channel_name} message sent first by {who}: {how}")[:300],
        detail={"proactive": message.pk, "rule": rule.pk if rule else None})
    _mark_contacted(case, by, now)
    events.emit(event_types.REPLY_CREATED, {"reply": reply_dict(reply), "case_id": case.pk}, team_id=case.team_id,
                case_id=case.pk)
    transaction.on_commit(lambda: _enqueue(reply.pk))
    return message


def _enqueue(reply_id: int) -> None:
    """The normal delivery (responses.tasks listens); a broker that is down leaves the reply
    pending for the sweep, as for any reply."""
    try:
        signals.reply_due.send(sender=Reply, reply_id=reply_id, countdown=0)
    except Exception:
        log.exception("could not enqueue delivery of proactive reply %s", reply_id)


def _check_customer(customer: Customer, now) -> None:
    if customer.proactive_opt_out:
        raise OptedOut(f"{customer} asked not to be contacted first: no proactive message is sent")
    hours = settings.CXM_PROACTIVE_CAP_HOURS
    recent = list(ProactiveMessage.objects.filter(customer=customer, created_at__gt=now - timedelta(hours=hours))
                  .order_by("created_at").values_list("created_at", flat=True))
    if len(recent) >= settings.CXM_PROACTIVE_CAP:
        allowed = recent[-settings.CXM_PROACTIVE_CAP] + timedelta(hours=hours)
        capped = Capped(f"{customer} already got {len(recent)} proactive message{'s' if len(recent) != 1 else ''} "
                     f"in the last {hours} hours (at most {settings.CXM_PROACTIVE_CAP}); the next may go after "
                     f"{timezone.localtime(allowed):%b %d, %H:%M}")
        capped.retry_after = max(1, int((allowed - now).total_seconds()))  # the API's Retry-After
        raise capped


def _check_channel(target: Target, text: str, template: str, values, now):
    """(template or None, its values, the text for the record), or InvalidRequest with the reason."""
    name = target.channel_name
    if not target.can_send:
        raise InvalidRequest(f"{name} only listens: it cannot carry a message to the customer")
    if not target.thread_id:
        raise InvalidRequest(f"the customer has no {name} thread to write on")
    if template:
        chosen = target.template(template)
        if chosen is None:
            known = ", ".join(t.name for t in target.templates) or "none"
            raise InvalidRequest(f"{template[:60]!r} is not an approved {name} template of this source "
                                 f"(approved: {known})")
        try:
            clean_values = chosen.check_values(values if values is not None else [])
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return chosen, clean_values, chosen.render(clean_values)
    body = (text or "").replace("\x00", "").strip()
    if not body:
        raise InvalidRequest("write a message, or choose an approved template")
    if not target.window_open(now):
        hours = f"{target.rules.window_hours:g}"
        if target.templates:
            raise InvalidRequest(f"the customer has not written on {name} in the last {hours} hours: only an "
                                 f"approved template can start the conversation; choose one")
        raise InvalidRequest(f"the customer has not written on {name} in the last {hours} hours, and this source "
                             f"has no approved templates. {target.rules.when_closed}".strip())
    if len(body) > target.rules.max_chars:
        raise InvalidRequest(f"{name} messages are at most {target.rules.max_chars} characters; this one is "
                             f"{len(body)}")
    return None, (), body


def _mark_contacted(case: Case, by, now) -> None:
    """Care has spoken: the case now waits on the customer, like after a reply."""
    changes = {"status": CaseStatus.PENDING, "waiting_since": None, "sla_state": SlaState.NONE, "sla_due_at": None,
               "pending_since": now, "updated_at": now}
    if case.first_response_at is None:
        changes["first_response_at"] = now
    if case.assignee_id is None and by is not None:
        changes["assignee"], changes["awaiting_assignment"] = by, False
    Case.objects.filter(pk=case.pk).update(**changes)
    for name, value in changes.items():
        setattr(case, name, value)
    events.emit(event_types.CASE_UPDATED, {"case": case_summary(case)}, team_id=case.team_id, case_id=case.pk)


def _key(value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidRequest("a proactive message needs a key (the same key sends once)")
    if len(value) > 64 or any(not (c.isascii() and (c.isalnum() or c in "-_:.")) for c in value):
        raise InvalidRequest("key: up to 64 letters, digits, '-', '_', ':' or '.'")
    return value


def outbound(reply: Reply, default: OutboundReply) -> OutboundReply:
    """What responses.replies.deliver sends for this reply: a proactive message goes to its own
    recipient and provider thread, with its template; any other reply as it is."""
    message = ProactiveMessage.objects.filter(reply_id=reply.pk).first()
    if message is None:
        return default
    template = (MessageTemplate(message.template_name, message.template_language, reply.text)
                if message.template_name else None)
    return OutboundReply(text=reply.text, channel=message.channel, recipient_id=message.recipient_id,
                         thread_id=message.thread_id, idempotency_key=reply.idempotency_key,
                         subject=default.subject, template=template,
                         template_values=tuple(message.template_values or ()))


def for_case(case: Case) -> list[ProactiveMessage]:
    return list(ProactiveMessage.objects.filter(case=case).select_related("reply", "sent_by")[:20])

