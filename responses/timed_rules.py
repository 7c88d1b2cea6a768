"""Timed rules: what happens to a case that has waited too long, counted in its team's business
time. "Pending on the customer for 48 business hours: close it with a message"; "waiting on an
agent for 2 hours: escalate, move it to a queue, or tell the supervisors".

Run by beat (`responses.run_timed_rules`). Each rule asks for its due cases with one indexed
query: the wait's start (`pending_since` or `waiting_since`) at or before the instant that lies
`after_minutes` business minutes back from now, and no run of this rule for this wait yet. A
TimedRuleRun row, unique per (rule, case, wait start), makes a rule fire once per wait even when
two beats overlap; a new wait (the customer writes, the agent answers) is a new start. Every
firing is on the case's timeline (a CaseActivity); a snoozed case is left alone until it wakes.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from responses import business_time, event_types, events
from responses.exceptions import InvalidRequest
from responses.models import Case, CaseActivity, CaseStatus, Note, Role, TimedRule, TimedRuleRun
from responses.snooze import activity_dict, record_activity
from responses.summaries import case_summary, note_dict

log = logging.getLogger(__name__)

BATCH = 200  # cases per rule per beat; the rest are due on the next beat
MAX_AFTER_MINUTES = 366 * 24 * 60
SINCE_FIELD = {TimedRule.Trigger.PENDING: "pending_since", TimedRule.Trigger.WAITING: "waiting_since"}
STATUSES = {TimedRule.Trigger.PENDING: [CaseStatus.PENDING],
            TimedRule.Trigger.WAITING: [CaseStatus.NEW, CaseStatus.OPEN]}


def validate(rule: TimedRule) -> None:
    """Raise ValidationError (field -> reason) for a rule that cannot run as its team expects."""
    errors: dict[str, str] = {}
    if not 1 <= (rule.after_minutes or 0) <= MAX_AFTER_MINUTES:
        errors["after_minutes"] = "give between 1 minute and a year of business time"
    if rule.action == TimedRule.Action.CLOSE and rule.trigger != TimedRule.Trigger.PENDING:
        errors["action"] = "only a case waiting on the customer can be closed by a rule: one waiting on an agent " \
                           "would drop a customer who is owed an answer"
    if rule.action == TimedRule.Action.REASSIGN:
        if rule.queue_id is None:
            errors["queue"] = "choose the queue to move the case to"
        elif rule.queue.team_id != rule.team_id:
            errors["queue"] = "the queue belongs to another team"
    if rule.canned_id and rule.canned.team_id not in (None, rule.team_id):
        errors["canned"] = "the message belongs to another team"
    if rule.action == TimedRule.Action.ESCALATE and not 0 < (rule.priority_boost or 0) <= 1:
        errors["priority_boost"] = "the priority boost is between 0 and 1 (e.g. 0.3)"
    if errors:
        raise ValidationError(errors)


def describe(rule: TimedRule) -> str:
    """The rule in words, for lists and the case's timeline."""
    hours = rule.after_minutes / 60
    span = f"{hours:g} business hour{'s' if hours != 1 else ''}" if rule.after_minutes % 60 == 0 or hours >= 1 \
        else f"{rule.after_minutes} business minutes"
    what = {TimedRule.Action.CLOSE: "close it" + (f" with “{rule.canned.title}”" if rule.canned_id else ""),
            TimedRule.Action.ESCALATE: f"raise its priority by {rule.priority_boost:g}",
            TimedRule.Action.REASSIGN: f"move it to {rule.queue.name if rule.queue_id else 'a queue'}, unassigned",
            TimedRule.Action.NOTIFY: "notify the supervisors"}[rule.action]
    return f"{rule.get_trigger_display()} for {span}: {what}"


def due_cases(rule: TimedRule, schedule: business_time.Schedule | None, now: datetime) -> QuerySet[Case]:
    """The cases this rule should fire on now (an index range on the team, status and wait start)."""
    field = SINCE_FIELD[rule.trigger]
    cutoff = business_time.subtract_business_minutes(schedule, now, rule.after_minutes)
    fired = TimedRuleRun.objects.filter(rule=rule, case=OuterRef("pk"), since=OuterRef(field))
    return (Case.objects.filter(team_id=rule.team_id, status__in=STATUSES[rule.trigger], snoozed=False,
                                **{f"{field}__lte": cutoff})
            .exclude(Exists(fired)).order_by(field, "id"))


def run_due_rules(now: datetime | None = None) -> int:
    """Fire every enabled rule on its due cases; returns how many times rules fired."""
    now = now or timezone.now()
    rules = list(TimedRule.objects.filter(enabled=True).select_related("team", "queue", "canned"))
    schedules = business_time.schedules_for({rule.team_id for rule in rules})
    fired = 0
    for rule in rules:
        schedule = schedules[rule.team_id]
        for case_id in list(due_cases(rule, schedule, now).values_list("id", flat=True)[:BATCH]):
            try:
                fired += _fire(rule, case_id, schedule, now)
            except Exception:  # one broken case must not stop the other rules and cases
                log.exception("timed rule %s failed on case %s", rule.pk, case_id)
    return fired


def _fire(rule: TimedRule, case_id: int, schedule, now: datetime) -> int:
    field = SINCE_FIELD[rule.trigger]
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(pk=case_id).first()
        since = getattr(case, field, None) if case else None
        if case is None or since is None or case.snoozed or case.status not in STATUSES[rule.trigger]:
            return 0  # it moved on since the query
        if business_time.minutes_between(schedule, since, now) < rule.after_minutes:
            return 0
        try:
            with transaction.atomic():
                TimedRuleRun.objects.create(rule=rule, case=case, since=since, fired_at=now)
        except IntegrityError:
            return 0  # another beat fired it for this wait
        outcome = ACTIONS[rule.action](rule, case, now)
        case.save()
        activity = _audit(rule, case, outcome)
        events.emit(event_types.CASE_UPDATED,
                    {"case": case_summary(case), "by": None, "activity": activity_dict(activity)},
                    team_id=case.team_id, case_id=case.pk)
        if rule.action == TimedRule.Action.NOTIFY:
            _notify(rule, case)
    if rule.action in (TimedRule.Action.CLOSE, TimedRule.Action.REASSIGN):
        from responses import assignment

        transaction.on_commit(lambda: assignment.drain_hold_queue([case.team_id]))
    return 1


def _close(rule: TimedRule, case: Case, now: datetime) -> str:
    from responses.cases import _apply_status
    from responses.replies import channel_rules, check_rules, render_canned

    outcome = ""
    if rule.canned_id:
        text = render_canned(rule.canned.text, case, None)
        try:
            # The channel's own limits, as for an agent's reply: after days of waiting a 24-hour
            # messaging window is usually closed, and a message the provider must refuse would
            # only end as a failed reply on a closed case.
            check_rules(channel_rules(case), text, now)
        except InvalidRequest as exc:
            outcome = f"The message was not sent: {str(exc).split('. ')[0]}."  # the timeline keeps 300 characters
        else:
            # Keyed by the rule and the wait: whatever happens to the beat, the customer gets it once.
            _send(case, text, f"rule-{rule.pk}-{case.pk}-{case.pending_since.timestamp():.0f}")
    _apply_status(case, CaseStatus.CLOSED)
    return outcome


def _send(case: Case, text: str, key: str) -> None:
    from responses.models import Reply
    from responses.replies import _create

    if not Reply.objects.filter(idempotency_key=key).exists():
        _create(case, text, key, author=None, automatic=True)


def _escalate(rule: TimedRule, case: Case, now: datetime) -> str:
    case.priority = min(1.0, case.priority + rule.priority_boost)
    return ""


def _reassign(rule: TimedRule, case: Case, now: datetime) -> str:
    case.queue = rule.queue
    case.assignee = None
    case.awaiting_assignment = True  # the hold queue's drain finds someone in the new queue's team
    return ""


def _nothing(rule: TimedRule, case: Case, now: datetime) -> str:
    return ""


ACTIONS = {TimedRule.Action.CLOSE: _close, TimedRule.Action.ESCALATE: _escalate,
           TimedRule.Action.REASSIGN: _reassign, TimedRule.Action.NOTIFY: _nothing}


def _audit(rule: TimedRule, case: Case, outcome: str = "") -> CaseActivity:
    """The firing on the case's timeline, in words (with what did not happen, and why)."""
    text = f"Automatic rule “{rule.name}”: {describe(rule)}." + (f" {outcome}" if outcome else "")
    return record_activity(case, "timed_rule", text, detail={"rule": rule.pk})


def _notify(rule: TimedRule, case: Case) -> None:
    """A note that @mentions the team's supervisors: their consoles toast it, the case keeps it."""
    note = Note.objects.create(case=case, author=None, text=f"Automatic rule “{rule.name}” asks a supervisor to "
                                                            "look at this case.")
    events.emit(event_types.NOTE_CREATED, {"note": note_dict(note), "case_id": case.pk}, team_id=case.team_id,
                case_id=case.pk)
    supervisors = list(rule.team.members.filter(is_active=True).filter(
        Q(cxm_profile__role__in=[Role.SUPERVISOR, Role.ADMIN]) | Q(is_superuser=True)).distinct())
    note.mentions.set(supervisors)
    for user in supervisors:
        events.emit(event_types.MENTION, {"note": note_dict(note), "case_id": case.pk,
                                "by": {"id": None, "username": "", "name": f"Rule “{rule.name}”"}},
                    user_id=user.pk, case_id=case.pk)
