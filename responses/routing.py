"""Routing: classified messages become cases in the right team's queue, in front of an agent.

Called on commit of a classification batch (responses.receivers). Each conversation is routed in
its own transaction with its case row locked, so two workers routing messages of one
conversation at once cannot create two cases or lose an update.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, prefetch_related_objects
from django.utils import timezone

from learning.actions import customer_key, negative_history
from learning.models import Classification
from listening.models import Conversation, Direction, Message
from responses import assignment, business_time, event_types, events, snooze
from responses.models import CannedResponse, Case, CaseStatus, MergeRecord, RoutingClaim, RoutingRule, SlaState, Team
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
CLAIM_CHUNK = 500
LANE_RANK = {"": 0, "noise": 0, "praise": 1, "triage": 2, "ambivalence": 2, "issue": 3}


def route_messages(message_ids) -> list[int]:
    """Open or update the case of each message's conversation; returns the case ids touched.

    A classified batch is routed in one transaction (one commit, one doorbell per console group):
    the batch's cases are read and locked in one query, its classifications claimed in one
    statement (responses.models.RoutingClaim: a classification already routed, by a task run
    twice or by the sweep, is skipped), teams, queues and calendars read once per batch. If that
    transaction fails (a concurrent router created one of its cases first, a deadlock), each
    conversation is routed in its own transaction, as before."""
    messages = list(
        Message.objects.filter(pk__in=list(message_ids), direction=Direction.INBOUND)
        .select_related("connector", "conversation__contact", "author__customer").order_by("sent_at", "id")
    )
    if not messages:
        return []
    current = {c.message_id: c for c in Classification.objects.filter(message__in=messages, is_current=True)}
    batch = _Batch(
        classifications={k: c for k, c in current.items() if c.status == Classification.Status.OK},
        claim_ids={k: c.pk for k, c in current.items()},
        rules=list(RoutingRule.objects.filter(enabled=True)),
    )
    batch.negatives = _negatives_within(messages, history_windows(batch.rules))
    by_conversation: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        by_conversation[message.conversation_id].append(message)
    groups = [by_conversation[k] for k in sorted(by_conversation)]  # one order for every router
    if len(groups) > 1:
        try:
            with transaction.atomic():
                return _route_batch(groups, batch)
        except DatabaseError as exc:
            log.info("routing %d conversations together failed (%r): one by one", len(groups), exc)
            batch.forget()
    touched = []
    for conversation_messages in groups:
        case_id = _route_conversation(conversation_messages, batch)
        if case_id:
            touched.append(case_id)
    return touched


@dataclass
class _Batch:
    """What routing one batch reads once: classifications, rules, and teams, queues and calendars
    (teams are few; the same Team instance, queues prefetched, serves every case of the batch)."""

    classifications: dict
    claim_ids: dict
    rules: list
    negatives: dict = field(default_factory=dict)
    teams: dict = field(default_factory=dict)
    connector_teams: dict = field(default_factory=dict)
    schedules: dict = field(default_factory=dict)

    def team(self, team_id: int) -> Team:
        if team_id not in self.teams:
            team = Team.objects.get(pk=team_id)
            prefetch_related_objects([team], "queues")
            self.teams[team_id] = team
        return self.teams[team_id]

    def team_for_connector(self, connector_id: int) -> Team:
        if connector_id not in self.connector_teams:
            team = team_for_connector(connector_id)
            if team.pk not in self.teams:
                prefetch_related_objects([team], "queues")
                self.teams[team.pk] = team
            self.connector_teams[connector_id] = self.teams[team.pk]
        return self.connector_teams[connector_id]

    def team_by_slug(self, slug: str) -> Team | None:
        for team in self.teams.values():
            if team.slug == slug:
                return team
        found = Team.objects.filter(slug=slug).values_list("pk", flat=True).first()
        return self.team(found) if found else None

    def schedule(self, team_id: int):
        if team_id not in self.schedules:
            self.schedules.update(business_time.schedules_for([team_id]))
        return self.schedules[team_id]

    def forget(self) -> None:
        """After a rolled-back transaction: rows read in it may be gone (a team created in it is not)."""
        self.teams.clear()
        self.connector_teams.clear()


def _route_batch(groups: list[list[Message]], batch: _Batch) -> list[int]:
    conversation_ids = [g[0].conversation_id for g in groups]
    _lock_conversations(conversation_ids)
    cases = _merge_targets({c.conversation_id: c for c in Case.objects.select_for_update(of=("self",))
                            .filter(conversation_id__in=conversation_ids).select_related("queue", "assignee")
                            .order_by("pk")})
    claimed = _claim([m for g in groups for m in g], batch)
    touched = []
    for conversation_messages in groups:
        todo = [m for m in conversation_messages if m.pk in claimed]
        if todo:
            case_id = _route_locked(todo, batch, cases.get(todo[0].conversation_id))
            if case_id:
                touched.append(case_id)
    return touched


def _route_conversation(messages: list[Message], batch: _Batch) -> int | None:
    for attempt in range(2):  # a concurrent router may create the case first: then update it
        try:
            with transaction.atomic():
                _lock_conversations([messages[0].conversation_id])
                case = (Case.objects.select_for_update(of=("self",)).select_related("queue", "assignee")
                        .filter(conversation_id=messages[0].conversation_id).first())
                if case is not None:
                    case = _merge_targets({case.conversation_id: case})[case.conversation_id]
                claimed = _claim(messages, batch)
                todo = [m for m in messages if m.pk in claimed]
                return _route_locked(todo, batch, case) if todo else None
        except IntegrityError:
            batch.forget()
            if attempt:
                raise
    return None


def _lock_conversations(conversation_ids: list[int]) -> None:
    """Two routers holding messages of one conversation (classified in two batches) take turns here,
    in id order, before either reads its case: the second then finds the case the first opened.
    Without it the second inserted a case too, hit the unique conversation, and its whole batch
    rolled back and was routed again one conversation at a time (and each rollback left the
    consoles a gap in event ids to wait out: bench/e2e.py at 50 msgs/s, push p95 1.8 s). NO KEY
    UPDATE: ingestion's inserts that reference the conversation do not wait for it."""
    list(Conversation.objects.select_for_update(no_key=True).filter(pk__in=conversation_ids).order_by("pk")
         .values_list("pk", flat=True))


def _merge_targets(cases: dict[int, Case]) -> dict[int, Case]:
    """A conversation whose case an agent merged into another: the customer's next message belongs
    to the case that now shows that conversation's timeline (the merge's target), not to the
    closed source, which would reopen beside it and split the story again. Targets are locked too."""
    sources = {case.pk: conversation for conversation, case in cases.items()}
    targets = dict(MergeRecord.objects.filter(source_id__in=sources, undone_at__isnull=True)
                   .values_list("source_id", "target_id"))
    if not targets:
        return cases
    locked = {c.pk: c for c in cases.values()}  # one object per row, when a batch holds both threads
    missing = set(targets.values()) - set(locked)
    locked.update((c.pk, c) for c in Case.objects.select_for_update(of=("self",))
                  .select_related("queue", "assignee").filter(pk__in=missing).order_by("pk"))
    for source_id, target_id in targets.items():
        if target_id in locked:
            cases[sources[source_id]] = locked[target_id]
    return cases


def _claim(messages: list[Message], batch: _Batch) -> set[int]:
    """The messages this transaction routes: those whose current classification no router has
    claimed yet (a concurrent claim of the same row waits for the other transaction, then finds
    it taken), and those with no classification at all (routed directly, by tests or the demo)."""
    claims = sorted({batch.claim_ids[m.pk] for m in messages if m.pk in batch.claim_ids})
    won: set[int] = set()
    table, now = RoutingClaim._meta.db_table, timezone.now()
    with connection.cursor() as cursor:
        for start in range(0, len(claims), CLAIM_CHUNK):
            chunk = claims[start:start + CLAIM_CHUNK]
            values = ", ".join(["(%s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (classification_id, routed_at) VALUES {values} "  # noqa: S608 - our table
                "ON CONFLICT (classification_id) DO NOTHING RETURNING classification_id",
                [value for pk in chunk for value in (pk, now)],
            )
            won.update(row[0] for row in cursor.fetchall())
    return {m.pk for m in messages if m.pk not in batch.claim_ids or batch.claim_ids[m.pk] in won}


def _route_locked(messages: list[Message], batch: _Batch, case: Case | None) -> int | None:
    classifications, rules, negatives = batch.classifications, batch.rules, batch.negatives
    if case is not None:
        case.team = batch.team(case.team_id)
        if case.conversation_id == messages[0].conversation_id:  # not a merge target's other thread
            case.conversation = messages[0].conversation
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
            case = _new_case(message, facts, actions, batch)
            created = True
        elif not case.is_active and facts.lane != "noise":
            _reopen(case, message, facts, actions, batch)
            reopened = True
        else:
            _update(case, message, facts, actions, batch)
        case.last_message = message
        if matched:
            log.debug("case %s matched rules %s", case.pk, matched)
        _apply_side_actions(case, actions, created or reopened)
    if case is None:
        return None
    snooze.wake_for_customer(case)  # the customer wrote: a snoozed case comes back now
    last = messages[-1]
    last_classification = classifications.get(last.pk)
    # Assigned before it is announced: the case's one event (created or updated) carries its
    # assignee, instead of a second case.updated right after it.
    queue_assigns = bool(case.queue and case.queue.auto_assign)
    if case.assignee_id is None and case.is_active and actions.get("auto_assign", queue_assigns):
        assignment.auto_assign(case, announce=False,
                               language=last_classification.language if last_classification else "")
    case.save()
    summary = case_summary(case, last, last_classification)
    if previous_team and previous_team != case.team_id:
        events.emit(event_types.CASE_REMOVED, {"case_id": case.pk}, team_id=previous_team, case_id=case.pk)
    for message in messages:
        events.emit(event_types.MESSAGE_CREATED, {"message": message_dict(message), "case_id": case.pk},
                    team_id=case.team_id, case_id=case.pk)
    events.emit(event_types.CASE_CREATED if created else event_types.CASE_UPDATED, {"case": summary},
                team_id=case.team_id, case_id=case.pk)
    return case.pk


def unrouted_messages(grace: timedelta, lookback: timedelta = timedelta(days=1), limit: int = 5000) -> list[int]:
    """Inbound messages classified more than `grace` ago (and received within `lookback`) whose
    current classification no router has claimed: their routing task was lost (its worker died
    holding it; the broker hands it back only after its visibility timeout) or failed for good."""
    now = timezone.now()
    claimed = RoutingClaim.objects.filter(classification_id=OuterRef("pk"))
    return list(
        Classification.objects.filter(is_current=True, created_at__lt=now - grace,
                                      message__direction=Direction.INBOUND, message__received_at__gte=now - lookback)
        .filter(~Exists(claimed)).order_by("message_id").values_list("message_id", flat=True)[:limit]
    )


def open_for_message(message: Message, case: Case | None, lane: str, team) -> tuple[Case, bool]:
    """Open a case for a message routing set aside (an agent says it is not spam), or reopen the
    conversation's closed case, in `lane` and in `team`'s queue for it. The caller holds the
    transaction, has locked `case` (the conversation's, if any) and checked that it is not active.

    Rules still set the SLA, priority and tags. The agent chose the team and the lane's queue, so
    the rules' team and queue do not apply; neither does an automatic acknowledgement, which would
    arrive late and beside the agent's own answer. Returns the case and whether it is new."""
    rules = list(RoutingRule.objects.filter(enabled=True))
    batch = _Batch(classifications={}, claim_ids={}, rules=rules)
    classification = Classification.objects.filter(message=message, is_current=True).first()
    facts = replace(_facts(message, classification, _negatives_within([message], history_windows(rules))), lane=lane)
    actions, _ = apply(rules, facts)
    actions = {k: v for k, v in actions.items() if k not in ("team", "queue", "acknowledge")}
    actions["team"] = team.slug
    created = case is None
    if created:
        case = _new_case(message, facts, actions, batch)
    else:
        _reopen(case, message, facts, actions, batch)
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


def _new_case(message: Message, facts: Facts, actions: dict, batch: _Batch) -> Case:
    team = _team(actions, message.connector_id, batch)
    case = Case(conversation=message.conversation, connector_id=message.connector_id, channel=message.channel,
                team=team, status=CaseStatus.NEW, lane=facts.lane,
                priority=facts.priority, opened_at=timezone.now())
    case.queue = queue_for(team, facts.lane, actions.get("queue", ""))
    _start_wait(case, message, actions, batch)
    _set_priority(case, facts.priority, actions)
    case.save()
    return case


def _reopen(case: Case, message: Message, facts: Facts, actions: dict, batch: _Batch) -> None:
    """A new inbound message reopens a resolved or closed case, from its own lane and priority."""
    case.status = CaseStatus.OPEN
    case.lane = facts.lane
    case.priority = 0.0
    case.resolved_at = None
    case.sla_state = SlaState.NONE
    case.waiting_since = None
    case.team = _team(actions, message.connector_id, batch, case.team)
    case.queue = queue_for(case.team, facts.lane, actions.get("queue", ""))
    _start_wait(case, message, actions, batch)
    _set_priority(case, facts.priority, actions)
    if case.assignee_id and not assignment.can_hold_cases(case.assignee, case.team_id):
        case.assignee = None


def _update(case: Case, message: Message, facts: Facts, actions: dict, batch: _Batch) -> None:
    if case.status == CaseStatus.PENDING:
        case.status = CaseStatus.OPEN  # the customer answered
    if LANE_RANK.get(facts.lane, 0) > LANE_RANK.get(case.lane, 0):
        case.lane = facts.lane
        if not case.assignee_id:
            case.queue = queue_for(case.team, facts.lane, actions.get("queue", ""))
    if "team" in actions or "queue" in actions:
        case.team = _team(actions, message.connector_id, batch, case.team)
        case.queue = queue_for(case.team, case.lane, actions.get("queue", ""))
    if case.waiting_since is None:
        _start_wait(case, message, actions, batch)
    _set_priority(case, facts.priority, actions)


def _team(actions: dict, connector_id: int, batch: _Batch, current=None):
    slug = actions.get("team")
    if slug:
        team = batch.team_by_slug(slug)
        if team:
            return team
        log.warning("routing rule names unknown team %r", slug)
    return current or batch.team_for_connector(connector_id)


def _start_wait(case: Case, message: Message, actions: dict, batch: _Batch) -> None:
    """The customer waits from this message on; the SLA clock starts with it."""
    case.waiting_since = message.received_at
    minutes = actions.get("sla_minutes") or (case.queue.sla_minutes if case.queue_id else None)
    case.sla_minutes = minutes
    # Business minutes of the team's calendar: nights, weekends and holidays do not count.
    # The batch's schedule of the team (None: open around the clock, so no team id to look it up by).
    schedule = batch.schedule(case.team_id) if minutes else None
    times = business_time.sla_times(None, message.received_at, minutes, schedule) if minutes else None
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
