"""A few past days of demo traffic, so a trial's dashboards and care figures are not empty at the
first start: stored through the connector's own webhook parser and listening.actions, classified
as the models would have classified each kind of demo message (no model load: seeding takes
seconds), counted in the rollups by the same incremental path as the workers, routed by the real
rules, and answered and resolved by the demo agents, except what came in the last hour or so,
which is the queue the agents start with.

The classifications are written here rather than by the model because the history must be quick
and the same on every machine; what arrives live is classified by the real workers."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.test.utils import override_settings
from django.utils import timezone

from cxm.demo import DemoMessage, DemoTraffic
from learning import rollups
from learning.default_intents import TAXONOMY
from learning.models import Classification
from listening.actions import ingest_messages
from listening.connectors import get_connector_class
from listening.connectors.base import WebhookRequest
from listening.models import Connector, Direction, Message
from responses import assignment
from responses.models import Case, CaseStatus, Reply, SlaState
from responses.routing import route_messages

PREFIX = "hist"  # history ids: demo-hist-<n>
OPEN_WINDOW = timedelta(minutes=40)  # what came in since then waits for the agents
MODEL = ("cxm-demo-history", "seeded")
# How each kind of demo message reads to the models: (sentiment, emotion, confidence).
FEELING = {
    "praise": ("positive", "joy", 0.93), "mixed": ("neutral", "sadness", 0.55),
    "suggestion": ("neutral", "neutral", 0.7),
    "question": ("neutral", "neutral", 0.8), "store_info": ("neutral", "neutral", 0.8),
    "purchase_interest": ("positive", "neutral", 0.7), "greeting": ("neutral", "neutral", 0.6),
    "spam": ("neutral", "neutral", 0.9), "follow_up": ("neutral", "neutral", 0.6),
}
ANGRY = ("negative", "anger", 0.88)
INTENT_OF = {"mixed": "complaint"}
ANSWERS = [
    "Hi {name}, so sorry about this. I've fixed it on our side; could you check again?",
    "Thanks {name}! I've passed this on to the team, it made our day.",
    "Hi {name}, here is how: Settings > Account > Email. Anything else, just reply here.",
    "Sorry for the wait, {name}. Your refund is on its way: 3 to 5 working days.",
]


def seed_history(connector: Connector, agents: list, *, days: int = 3, per_day: int = 120, seed: int = 11,
                 now: datetime | None = None) -> int:
    """Store `days` of demo traffic ending now on `connector`; returns how many messages were
    stored (none when the history is already there: setup_demo can run again). Call it outside a
    transaction: ingest_messages announces new messages when they commit, and the classifier must
    hear nothing of these (they are classified here), so the commit must come inside."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("seed_history commits as it goes: call it outside a transaction")
    if Message.objects.filter(connector=connector, external_id__startswith=f"demo-{PREFIX}-").exists():
        return 0
    now = now or timezone.now()
    rng = random.Random(seed)
    traffic = DemoTraffic(seed=seed)
    traffic.run_id = PREFIX
    demo = [traffic.next(at=moment) for moment in _moments(rng, now, days, per_day)]
    # Each message is classified below, as the models would have: not again by a worker.
    with override_settings(CXM_CLASSIFY_ON_INGEST=False):
        stored = _store(connector, demo)
    kinds = {m.payload["id"]: m for m in demo}
    messages = list(Message.objects.filter(connector=connector, external_id__in=list(kinds))
                    .select_related("conversation"))
    lanes = {slug: lane for slug, _, _, lane, _ in TAXONOMY}
    weights = {slug: weight for slug, _, _, _, weight in TAXONOMY}
    with transaction.atomic():
        created = Classification.objects.bulk_create(
            [_classification(m, kinds[m.external_id], lanes, weights, rng) for m in messages])
        for row, message in zip(created, messages, strict=True):
            row.message = message
        rollups.record([], created)
        rollups.refresh_moods({m.conversation_id for m in messages})
    route_messages([m.pk for m in messages])
    _answer(connector, agents, now, rng)
    # Routing filled the agents' capacity with cases that are now resolved: what waits goes to them.
    assignment.drain_hold_queue()
    return stored


def _moments(rng: random.Random, now: datetime, days: int, per_day: int) -> list[datetime]:
    """Arrival times over the past days, busier in the day than at night."""
    moments = []
    while len(moments) < days * per_day:
        moment = now - timedelta(seconds=rng.uniform(60, days * 86400))
        hour = timezone.localtime(moment).hour
        if rng.random() < (1.0 if 8 <= hour < 22 else 0.25):
            moments.append(moment)
    return sorted(moments)


def _store(connector: Connector, demo: list[DemoMessage]) -> int:
    parser = get_connector_class(connector.kind)(connector)
    stored = 0
    for start in range(0, len(demo), 500):
        body = json.dumps({"messages": [m.payload for m in demo[start:start + 500]]}).encode()
        request = WebhookRequest(method="POST", url="", headers={}, query={}, body=body)
        stored += ingest_messages(connector, parser.parse_webhook(request)).created
    return stored


def _classification(message: Message, demo: DemoMessage, lanes: dict, weights: dict,
                    rng: random.Random) -> Classification:
    kind = demo.lane_hint
    intent = INTENT_OF.get(kind, kind)
    sentiment, emotion, confidence = FEELING.get(kind, ANGRY)
    lane = lanes.get(intent, "")
    if kind == "mixed":
        lane = "ambivalence"
    elif lane == "follow":
        lane = "issue"  # routing keeps the conversation's lane for a follow-up
    elif not lane:
        lane = "praise" if sentiment == "positive" and intent == "purchase_interest" else "issue"
    confidence = round(min(0.99, max(0.3, confidence + rng.uniform(-0.15, 0.08))), 2)
    priority = round(min(1.0, (0.35 if sentiment == "negative" else 0.1) + weights.get(intent, 0.0)
                         + rng.uniform(0, 0.15)), 3)
    return Classification(
        message=message, sentiment=sentiment, sentiment_scores={sentiment: confidence},
        emotion=emotion, emotion_scores={emotion: round(confidence - 0.1, 2)},
        intent=intent, intent_scores={intent: confidence}, language=demo.language, language_confidence=0.95,
        lane=lane, priority=priority, confidence=confidence, model_name=MODEL[0], model_version=MODEL[1],
        created_at=message.sent_at,
    )


def _answer(connector: Connector, agents: list, now: datetime, rng: random.Random) -> None:
    """Every case of the history but the last hour's was answered, then resolved, by an agent:
    the care figures (first response, resolution, SLA) have something to show."""
    cases = (Case.objects.filter(conversation__connector=connector,
                                 conversation__messages__external_id__startswith=f"demo-{PREFIX}-")
             .distinct().select_related("conversation__contact"))
    spans = {row["conversation_id"]: row for row in Message.objects.filter(
        connector=connector, direction=Direction.INBOUND, external_id__startswith=f"demo-{PREFIX}-")
        .values("conversation_id").annotate(first=Min("sent_at"), last=Max("sent_at")).order_by()}
    replies, updates = [], []
    for case in cases:
        span = spans.get(case.conversation_id)
        if span is None:
            continue
        case.opened_at = span["first"]
        sla = timedelta(minutes=case.sla_minutes) if case.sla_minutes else None
        if now - span["last"] < OPEN_WINDOW or not agents:
            case.waiting_since = span["first"]
            case.sla_due_at = span["first"] + sla if sla else None
            case.sla_state = _sla_state(case.sla_due_at, now) if sla else SlaState.NONE
            updates.append(case)
            continue
        agent = rng.choice(agents)
        # Most answers inside the hour, a long tail beyond it (nights, busy spells).
        answered = span["first"] + timedelta(minutes=min(rng.lognormvariate(3.0, 0.9), 600))
        answered = max(answered, span["last"] + timedelta(minutes=rng.uniform(2, 20)))
        answered = min(answered, now - timedelta(minutes=5))
        contact = case.conversation.contact
        name = ((contact.display_name if contact else "").split() or ["there"])[0]
        replies.append(Reply(case=case, author=agent, text=rng.choice(ANSWERS).format(name=name),
                             idempotency_key=f"demo-{PREFIX}-{uuid.uuid4().hex}", status=Reply.Status.DELIVERED,
                             created_at=answered, delivered_at=answered + timedelta(seconds=2), attempts=1))
        case.assignee, case.awaiting_assignment = agent, False
        case.first_response_at = answered
        case.status, case.resolved_at = CaseStatus.RESOLVED, answered + timedelta(minutes=rng.uniform(1, 30))
        case.waiting_since, case.sla_state, case.sla_due_at = None, SlaState.NONE, None
        updates.append(case)
    with transaction.atomic():
        Reply.objects.bulk_create(replies)
        Case.objects.bulk_update(updates, ["opened_at", "waiting_since", "sla_due_at", "sla_state", "assignee",
                                           "awaiting_assignment", "first_response_at", "status", "resolved_at"])


def _sla_state(due: datetime | None, now: datetime) -> str:
    if due is None:
        return SlaState.NONE
    if due <= now:
        return SlaState.BREACHED
    return SlaState.NEAR if due - now < timedelta(minutes=15) else SlaState.OK
