"""What a fired signal rule does (responses.signal_rules decides when): open a proactive case in
the Care queue with the signals as its reason, raise a case's priority, tag the customer, alert
the team, send a proactive template (responses.proactive). Runs inside the caller's transaction,
with the rule's state row locked.

A proactive case needs a conversation to live in: the customer's active case takes the firing
(priority raised, reason added) if there is one; otherwise a new conversation is started on the
customer's preferred channel, else where they last wrote (a reply there reaches them). A customer
never heard on any channel gets no case, and the team is alerted instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Case as DbCase, F, IntegerField, Q, Value, When

from cxm.exceptions import CXMError
from listening.models import Conversation, Customer, CustomerTag
from responses import event_types, events
from responses.models import (
    ACTIVE_STATUSES,
    Case,
    CaseActivity,
    SignalRule,
    SignalRuleFiring,
    SignalRuleState,
    Team,
)
from responses.proactive import PROACTIVE_TAG, PROACTIVE_THREAD_PREFIX, open_proactive_case, send_for_rule
from responses.replies import render_canned
from responses.summaries import case_summary
from responses.teams import default_team

log = logging.getLogger(__name__)


@dataclass
class FireContext:
    """What a batch's firings of one rule read once instead of once each (bench/signals.py: 200
    firings were most of the rule worker's time, at a dozen statements each): the customers'
    active cases, locked; the customers; the teams by connector, with their queues. Built inside
    the transaction that fires; a case one firing opens is the active case of the next."""

    active: dict[int, Case | None]
    customers: dict[int, Customer]
    teams: dict[int, Team] = field(default_factory=dict)  # connector id -> team, queues prefetched

    @classmethod
    def read(cls, rule: SignalRule, customer_ids) -> FireContext:
        ids = sorted(set(customer_ids))
        active: dict[int, Case | None] = dict.fromkeys(ids)
        for case in (Case.objects.select_for_update().filter(status__in=ACTIVE_STATUSES,
                                                             conversation__contact__customer_id__in=ids)
                     .annotate(customer_id=F("conversation__contact__customer_id")).order_by("-opened_at", "-id")):
            if active[case.customer_id] is None:
                active[case.customer_id] = case
        actions = rule.actions or {}
        customers = Customer.objects.in_bulk(ids) if actions.get("open_case") or actions.get("alert") else {}
        return cls(active, customers)

    def team_for(self, connector_id: int) -> Team:
        if connector_id not in self.teams:
            team = (Team.objects.filter(connectors__id=connector_id).order_by("id").prefetch_related("queues").first()
                    or default_team())
            self.teams[connector_id] = team
        return self.teams[connector_id]


def fire(rule: SignalRule, state: SignalRuleState, signal_ids: list[int], reason: str, at,
         message_id: int | None = None, *, context: FireContext | None = None) -> SignalRuleFiring:
    """Record the firing and carry out the rule's actions; returns the firing. `context`: what a
    batch of firings reads once (FireContext.read), else read here."""
    actions = rule.actions or {}
    firing = SignalRuleFiring.objects.create(rule=rule, key=state.key, customer_id=state.customer_id,
                                             signal_ids=[i for i in signal_ids if i], reason=reason[:300],
                                             message_id=message_id)
    done: list[str] = []
    context = context or FireContext.read(rule, [state.customer_id])
    case = context.active.get(state.customer_id)
    # Read once for the case's channel and the alert's words.
    customer = context.customers.get(state.customer_id)
    if actions.get("open_case"):
        case, opened = _open_or_join(rule, firing, case, customer, context)
        if case is not None:
            context.active[state.customer_id] = case
            done.append("case_opened" if opened else "case_joined")
    elif case is not None and actions.get("priority") is not None:
        _raise(case, float(actions["priority"]), firing)
        done.append("priority")
    if actions.get("proactive") and case is not None:
        done.append(_send_proactive(rule, firing, case))
    if actions.get("tag"):
        CustomerTag.objects.get_or_create(customer_id=state.customer_id, name=actions["tag"],
                                          defaults={"added_by": f"rule: {rule.name}"[:160]})
        done.append("tagged")
    if actions.get("alert"):
        team_id = case.team_id if case is not None else _team(rule, state.customer_id, context).pk
        events.emit(event_types.SIGNAL_ALERT, {"rule": {"id": rule.pk, "name": rule.name},
                                     "customer": str(customer) if customer else "",
                                     "reason": firing.reason, "firing": firing.pk},
                    team_id=team_id, case_id=case.pk if case is not None else None)
        done.append("alerted")
    firing.case, firing.done = case, done
    firing.save(update_fields=["case", "done"])
    return firing


def _send_proactive(rule: SignalRule, firing: SignalRuleFiring, case: Case) -> str:
    """The rule's approved template to the customer. A refusal (opted out, capped, the channel's
    rules) does not undo the firing: the case's timeline says why nothing was sent."""
    values = [render_canned(value, case, None) for value in rule.actions["proactive"].get("values", [])]
    try:
        with transaction.atomic():
            send_for_rule(case, rule, firing.pk, values)
        return "proactive_sent"
    except CXMError as exc:
        CaseActivity.objects.create(case=case, kind="proactive", text=f"No proactive message sent: {exc.reason}"[:300],
                                    detail={"rule": rule.pk, "refused": exc.code})
        return "proactive_refused"


def _open_or_join(rule: SignalRule, firing: SignalRuleFiring, case: Case | None,
                  customer: Customer | None, context: FireContext) -> tuple[Case | None, bool]:
    priority = float((rule.actions or {}).get("priority", 0.5))
    if case is not None:
        _raise(case, priority, firing)
        return case, False
    latest = _latest_conversation(firing.customer_id, customer.preferred_channel if customer is not None else "")
    if latest is None:
        log.info("rule %s fired for customer %s, who has no channel to open a case on", rule.pk, firing.customer_id)
        return None, False
    case = open_proactive_case(
        latest, thread=f"{PROACTIVE_THREAD_PREFIX}{firing.pk}", subject=f"Proactive: {rule.name}",
        team=rule.team or context.team_for(latest.connector_id), priority=priority,
        # Nobody is waiting on a proactive case, but care should reach out within the queue's SLA.
        reach_out_within_sla=True, preview=firing.reason, proactive={"rule": rule.name, "reason": firing.reason})
    return case, True


def _latest_conversation(customer_id: int, channel: str) -> Conversation | None:
    """The newest conversation of the customer's contact on their preferred channel (chosen by an
    agent, or learned from where they answer), else of the contact seen last: one query (it was a
    contact query per choice and a conversation query)."""
    # With its contact: the case.created summary names the customer by it.
    conversations = Conversation.objects.filter(contact__customer_id=customer_id).select_related("contact")
    order = ["-contact__last_seen_at", "-contact_id", "-last_message_at", "-id"]
    if channel:
        conversations = conversations.annotate(
            on_preferred=DbCase(When(contact__channel=channel, then=Value(1)), default=Value(0),
                                output_field=IntegerField()))
        order.insert(0, "-on_preferred")
    return conversations.order_by(*order).first()


def _raise(case: Case, priority: float, firing: SignalRuleFiring) -> None:
    case.priority = max(case.priority, min(1.0, max(0.0, priority)))
    case.tags = sorted({*case.tags, PROACTIVE_TAG})
    case.save(update_fields=["priority", "tags", "updated_at"])
    events.emit(event_types.CASE_UPDATED, {"case": case_summary(case), "proactive": {"reason": firing.reason}},
                team_id=case.team_id, case_id=case.pk)


def _team(rule: SignalRule, customer_id: int, context: FireContext):
    if rule.team_id:
        return rule.team
    latest = (Conversation.objects.filter(Q(contact__customer_id=customer_id)).order_by("-last_message_at")
              .values_list("connector_id", flat=True).first())
    return context.team_for(latest) if latest else default_team()
