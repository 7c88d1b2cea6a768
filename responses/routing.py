"""Routing: classified messages become cases in the right team's queue, in front of an agent.

Called on commit of a classification batch (responses.receivers). Each conversation is routed in
its own transaction with its case row locked, so two workers routing messages of one
conversation at once cannot create two cases or lose an update.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from learning.actions import customer_key, negative_history
from learning.models import Classification
from listening.models import Direction, Message
from responses import assignment, business_time, event_types, events, snooze
from responses.models import CannedResponse, Case, CaseStatus, RoutingRule, SlaState, Team
from responses.replies import send_automatic_reply
from responses.rules import Facts, apply, history_windows
from responses.summaries import case_summary, message_dict
from responses.teams import queue_for, team_for_connector

log = logging.getLogger(__name__)

# While a case is active its lane only moves towards the more urgent: a "thanks" in the middle of
# an unresolved issue does not turn it into praise. Triage (what the models cannot place) ranks
# with ambivalence: it may hide a problem, so it lifts a praise case out of the slow Amplify queue
# in front of a person; but an issue or ambivalence case is already in front of one, and an
# unplaced message must not move it out of its queue.
LANE_RANK = {"": 0, "noise": 0, "praise": 1, "triage": 2, "ambivalence": 2, "issue": 3}


def route_messages(message_ids) -> list[int]:
    """Open or update the case of each message's conversation; returns the case ids touched."""
    messages = list(
        Message.objects.filter(pk__in=list(message_ids), direction=Direction.INBOUND)
        .select_related("connector", "conversation", "author__customer").order_by("sent_at", "id")
    )
    if not messages:
        return []
    classifications = {
        c.message_id: c
        for c in Classification.objects.filter(message__in=messages, is_current=True, status=Classification.Status.OK)
    }
    rules = list(RoutingRule.objects.filter(enabled=True))
    negatives = _negatives_within(messages, history_windows(rules))
    by_conversation: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_conversation[message.conversation_id].append(message)
    touched = []
    for conversation_messages in by_conversation.values():
        case_id = _route_conversation(conversation_messages, classifications, rules, negatives)
        if case_id:
            touched.append(case_id)
    return touched


def _route_conversation(messages: list[Message], classifications: dict, rules, negatives) -> int | None:
    for attempt in range(2):  # a concurrent router may create the case first: then update it
        try:
            with transaction.atomic():
                return _route_locked(messages, classifications, rules, negatives)
        except IntegrityError:
            if attempt:
                raise
    return None


def _route_locked(messages: list[Message], classifications: dict, rules, negatives) -> int | None:
    conversation = messages[0].conversation
    case = Case.objects.select_for_update().filter(conversation=conversation).first()
    created = reopened = False
    previous_team = case.team_id if case else None
    actions: dict = {}
    for message in messages:
        classification = classifications.get(message.pk)
        facts = _facts(message, classification, negatives)
        if case is None and facts.lane == "noise":
            continue  # spam opens no case; it is still stored and counted on the dashboards
        actions, matched = apply(rules, facts)
        if case is None:
            case = _new_case(message, facts, actions)
            created = True
        elif not case.is_active and facts.lane != "noise":
            _reopen(case, message, facts, actions)
            reopened = True
        else:
            _update(case, message, facts, actions)
        case.last_message = message
        if matched:
            log.debug("case %s matched rules %s", case.pk, matched)
        _apply_side_actions(case, actions, created or reopened)
    if case is None:
        return None
    snooze.wake_for_customer(case)  # the customer wrote: a snoozed case comes back now
    case.save()
    last = messages[-1]
    summary = case_summary(case, last, classifications.get(last.pk))
    if previous_team and previous_team != case.team_id:
        events.emit(event_types.CASE_REMOVED, {"case_id": case.pk}, team_id=previous_team, case_id=case.pk)
    for message in messages:
        events.emit(event_types.MESSAGE_CREATED, {"message": message_dict(message), "case_id": case.pk},
                    team_id=case.team_id, case_id=case.pk)
    events.emit(event_types.CASE_CREATED if created else event_types.CASE_UPDATED, {"case": summary},
                team_id=case.team_id, case_id=case.pk)
    queue_assigns = bool(case.queue and case.queue.auto_assign)
    if case.assignee_id is None and case.is_active and actions.get("auto_assign", queue_assigns):
        assignment.auto_assign(case)
    return case.pk


def open_for_message(message: Message, case: Case | None, lane: str, team) -> tuple[Case, bool]:
    """Open a case for a message routing set aside (an agent says it is not spam), or reopen the
    conversation's closed case, in `lane` and in `team`'s queue for it. The caller holds the
    transaction, has locked `case` (the conversation's, if any) and checked that it is not active.

    Rules still set the SLA, priority and tags. The agent chose the team and the lane's queue, so
    the rules' team and queue do not apply; neither does an automatic acknowledgement, which would
    arrive late and beside the agent's own answer. Returns the case and whether it is new."""
    rules = list(RoutingRule.objects.filter(enabled=True))
    classification = Classification.objects.filter(message=message, is_current=True).first()
    facts = replace(_facts(message, classification, _negatives_within([message], history_windows(rules))), lane=lane)
    actions, _ = apply(rules, facts)
    actions = {k: v for k, v in actions.items() if k not in ("team", "queue", "acknowledge")}
    actions["team"] = team.slug
    created = case is None
    if created:
        case = _new_case(message, facts, actions)
    else:
        _reopen(case, message, facts, actions)
    newest = message.conversation.messages.filter(direction=Direction.INBOUND).order_by("-sent_at", "-id").first()
    case.last_message = newest or message
    _apply_side_actions(case, actions, False)
    case.save()
    return case, created


def _negatives_within(messages: list[Message], windows: set[int]) -> dict[int, dict[int, int]]:
    """message id -> {window minutes: the customer's negative messages within it, this one
    included}, for stateful rules such as "third negative message within an hour"."""
    if not windows:
        return {}
    history = negative_history(messages, timedelta(minutes=max(windows)), include_batch=True)
    return {m.pk: {w: _count_before(history.get(customer_key(m.author), []), m.sent_at, w) for w in windows}
            for m in messages}


def _facts(message: Message, c: Classification | None, negatives: dict) -> Facts:
    author = message.author
    return Facts(
        lane=c.lane if c else "",
        sentiment=c.sentiment if c else "",
        emotion=c.emotion if c else "",
        intent=c.intent if c else "",
        language=c.language if c else "",
        channel=message.channel,
        connector=message.connector.slug,
        topics=[str(t.get("name", "")).lower() for t in (c.topics if c else []) if isinstance(t, dict)],
        text=message.text,
        priority=c.priority if c else 0.0,
        reach=(author.followers or 0) if author else 0,
        vip=bool(author and author.customer and author.customer.vip),
        tier=author.customer.tier if author and author.customer else "",
        customer=author.customer if author else None,
        at=timezone.localtime(message.sent_at),
        negatives_within=negatives.get(message.pk, {}),
    )


def _count_before(times: list, at, minutes: int) -> int:
    start = at - timedelta(minutes=minutes)
    return sum(1 for t in times if start <= t <= at)


def _new_case(message: Message, facts: Facts, actions: dict) -> Case:
    team = _team(actions, message.connector_id)
    case = Case(conversation=message.conversation, connector_id=message.connector_id, channel=message.channel,
                team=team, status=CaseStatus.NEW, lane=facts.lane,
                priority=facts.priority, opened_at=timezone.now())
    case.queue = queue_for(team, facts.lane, actions.get("queue", ""))
    _start_wait(case, message, actions)
    _set_priority(case, facts.priority, actions)
    case.save()
    return case


def _reopen(case: Case, message: Message, facts: Facts, actions: dict) -> None:
    """A new inbound message reopens a resolved or closed case, from its own lane and priority."""
    case.status = CaseStatus.OPEN
    case.lane = facts.lane
    case.priority = 0.0
    case.resolved_at = None
    case.sla_state = SlaState.NONE
    case.waiting_since = None
    case.team = _team(actions, message.connector_id, case.team)
    case.queue = queue_for(case.team, facts.lane, actions.get("queue", ""))
    _start_wait(case, message, actions)
    _set_priority(case, facts.priority, actions)
    if case.assignee_id and not assignment.can_hold_cases(case.assignee, case.team_id):
        case.assignee = None


def _update(case: Case, message: Message, facts: Facts, actions: dict) -> None:
    if case.status == CaseStatus.PENDING:
        case.status = CaseStatus.OPEN  # the customer answered
    if LANE_RANK.get(facts.lane, 0) > LANE_RANK.get(case.lane, 0):
        case.lane = facts.lane
        if not case.assignee_id:
            case.queue = queue_for(case.team, facts.lane, actions.get("queue", ""))
    if "team" in actions or "queue" in actions:
        case.team = _team(actions, message.connector_id, case.team)
        case.queue = queue_for(case.team, case.lane, actions.get("queue", ""))
    if case.waiting_since is None:
        _start_wait(case, message, actions)
    _set_priority(case, facts.priority, actions)


def _team(actions: dict, connector_id: int, current=None):
    slug = actions.get("team")
    if slug:
        team = Team.objects.filter(slug=slug).first()
        if team:
            return team
        log.warning("routing rule names unknown team %r", slug)
    return current or team_for_connector(connector_id)


def _start_wait(case: Case, message: Message, actions: dict) -> None:
    """The customer waits from this message on; the SLA clock starts with it."""
    case.waiting_since = message.received_at
    minutes = actions.get("sla_minutes") or (case.queue.sla_minutes if case.queue_id else None)
    case.sla_minutes = minutes
    # Business minutes of the team's calendar: nights, weekends and holidays do not count.
    times = business_time.sla_times(case.team_id, message.received_at, minutes) if minutes else None
    case.sla_due_at, case.sla_near_at = (times.due_at, times.near_at) if times else (None, None)
    case.sla_state = SlaState.OK if minutes else SlaState.NONE


def _set_priority(case: Case, message_priority: float, actions: dict) -> None:
    base = actions.get("priority", message_priority)
    candidate = min(1.0, max(0.0, float(base) + float(actions.get("priority_boost", 0.0))))
    case.priority = max(case.priority, candidate)


def _apply_side_actions(case: Case, actions: dict, fresh: bool) -> None:
    if actions.get("tags"):
        case.tags = sorted({*case.tags, *actions["tags"]})
    template_id = actions.get("acknowledge")
    if fresh and template_id:
        canned = CannedResponse.objects.filter(pk=template_id).first()
        if canned is None:
            log.warning("routing rule acknowledges with missing canned response %r", template_id)
            return
        case.save()
        send_automatic_reply(case, canned)
