"""What agents do to cases: status, tags, notes with @mentions, corrections, bulk actions; and
the SLA clock that raises a case's priority as it nears or passes its due time."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from learning.actions import record_correction
from listening.models import Message
from responses import access, assignment, event_types, events
from responses.exceptions import InvalidRequest
from responses.models import ACTIVE_STATUSES, Case, CaseStatus, Note, SlaState
from responses.summaries import case_summary, note_dict, user_dict

MAX_NOTE_CHARS = 4000
MAX_TAGS = 20
MAX_BULK = 500
TAG_RE = re.compile(r"^[\w][\w .:-]{0,39}$")
MENTION_RE = re.compile(r"(?<![\w@])@([\w.+-]{1,150})")
# Near breach: within this share of the SLA (or 5 minutes, whichever is longer) of the due time.
NEAR_SHARE = 0.2
NEAR_BOOST = 0.15
BREACH_BOOST = 0.3


def _changed(case: Case, by=None, **extra) -> None:
    events.emit(event_types.CASE_UPDATED, {"case": case_summary(case), "by": user_dict(by), **extra},
                team_id=case.team_id, case_id=case.pk)


def set_status(user, case_id, status: str) -> Case:
    access.require_reply(user)
    if status not in CaseStatus.values:
        raise InvalidRequest(f"status must be one of {', '.join(CaseStatus.values)}")
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        _apply_status(case, status)
        case.save()
        _changed(case, user)
    if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED) and case.assignee_id:
        assignment.drain_hold_queue([case.team_id])  # the agent has a free seat now
    return case


def _apply_status(case: Case, status: str) -> None:
    now = timezone.now()
    case.status = status
    if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED):
        case.resolved_at = case.resolved_at or now
        case.sla_state, case.sla_due_at, case.waiting_since = SlaState.NONE, None, None
        case.awaiting_assignment = False
    else:
        case.resolved_at = None


def resolve_after_delivery(case_id: int) -> None:
    """Send-and-resolve: the reply is out, so the case is resolved (inside delivery's transaction)."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.is_active:
        _apply_status(case, CaseStatus.RESOLVED)
        case.save()
        _changed(case)
        if case.assignee_id:
            transaction.on_commit(lambda: assignment.drain_hold_queue([case.team_id]))


def set_tags(user, case_id, tags) -> Case:
    access.require_reply(user)
    tags = _clean_tags(tags)
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        case.tags = tags
        case.save(update_fields=["tags", "updated_at"])
        _changed(case, user)
    return case


def _clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = [t for t in tags.split(",")]
    tags = sorted({str(t).strip() for t in tags if str(t).strip()})
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"at most {MAX_TAGS} tags")
    bad = [t for t in tags if not TAG_RE.match(t)]
    if bad:
        raise InvalidRequest(f"tags are up to 40 letters, digits, spaces, '.', ':' or '-': {bad[0][:40]!r}")
    return tags


def add_note(user, case_id, text: str) -> Note:
    """A private note; each @username of someone who can see the case is notified live."""
    access.require_reply(user)
    text = (text or "").replace("\x00", "").strip()
    if not text:
        raise InvalidRequest("the note is empty")
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidRequest(f"the note is {len(text)} characters; at most {MAX_NOTE_CHARS}")
    with transaction.atomic():
        case = access.get_case(user, case_id)
        note = Note.objects.create(case=case, author=user, text=text)
        mentioned = _mentionable(case, MENTION_RE.findall(text))
        note.mentions.set(mentioned)
        events.emit(event_types.NOTE_CREATED, {"note": note_dict(note), "case_id": case.pk}, team_id=case.team_id,
                    case_id=case.pk)
        for member in mentioned:
            if member.pk != user.pk:
                events.emit(event_types.MENTION, {"note": note_dict(note), "case_id": case.pk, "by": user_dict(user)},
                            user_id=member.pk, case_id=case.pk)
    return note


def _mentionable(case: Case, usernames: list[str]):
    if not usernames:
        return []
    users = get_user_model().objects.filter(username__in=set(usernames), is_active=True)
    return [u for u in users if u.is_superuser or case.team.members.filter(pk=u.pk).exists()]


def correct(user, case_id, message_id, field: str, value: str):
    """One-click correction of a message's sentiment, intent or lane (stored as training data by
    learning); a lane correction also moves the case to that lane's queue."""
    access.require_reply(user)
    with transaction.atomic():
        case = access.get_case(user, case_id, for_update=True)
        message = Message.objects.filter(pk=_int(message_id), conversation_id=case.conversation_id).first()
        if message is None:
            raise InvalidRequest("that message is not part of this case")
        correction = record_correction(message, field, value, user=user)
        if field == "lane" and value != case.lane:
            from responses.teams import queue_for

            case.lane = value
            if not case.assignee_id:
                case.queue = queue_for(case.team, value)
            case.save()
        _changed(case, user, correction={"message": message.pk, "field": field, "value": value})
    return correction


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidRequest("expected a number")


def bulk(user, case_ids, action: str, value=None) -> int:
    """Assign, resolve or tag several cases; every case must be visible to the user."""
    access.require_reply(user)
    ids = [_int(i) for i in (case_ids or [])]
    if not ids or len(ids) > MAX_BULK:
        raise InvalidRequest(f"select between 1 and {MAX_BULK} cases")
    visible = set(access.visible_cases(user).filter(pk__in=ids).values_list("id", flat=True))
    if visible != set(ids):
        raise InvalidRequest("some selected cases do not exist")
    if action == "resolve":
        for case_id in ids:
            set_status(user, case_id, CaseStatus.RESOLVED)
    elif action == "assign":
        assignee = user if value in (None, "", "me") else get_user_model().objects.filter(pk=_int(value)).first()
        if assignee is None:
            raise InvalidRequest("no such agent")
        for case_id in ids:
            assignment.assign_case(case_id, assignee, user)
    elif action == "tag":
        tags = _clean_tags(value or [])
        for case_id in ids:
            case = access.get_case(user, case_id)
            set_tags(user, case_id, sorted({*case.tags, *tags}))
    else:
        raise InvalidRequest("action must be assign, resolve or tag")
    return len(ids)


def check_slas(now=None) -> int:
    """Mark cases near or past their SLA and raise their priority once per state. Returns how many
    cases changed."""
    now = now or timezone.now()
    changed = 0
    # sla_near_at and sla_due_at are business-time instants set when the clock started (routing),
    # so the due cases are an indexed range query; rows without sla_near_at get the old window.
    due = Case.objects.filter(status__in=ACTIVE_STATUSES).filter(
        Q(sla_state=SlaState.OK, sla_near_at__lte=now)
        | Q(sla_state__in=[SlaState.OK, SlaState.NEAR], sla_due_at__lte=now)
        | Q(sla_state=SlaState.OK, sla_near_at__isnull=True, sla_due_at__lte=now + timedelta(days=1)))
    for case_id in due.values_list("id", flat=True):
        with transaction.atomic():
            case = Case.objects.select_for_update().filter(pk=case_id).first()
            state = _sla_state(case, now) if case else None
            if case is None or state == case.sla_state:
                continue
            boost = BREACH_BOOST if state == SlaState.BREACHED else NEAR_BOOST
            case.sla_state = state
            case.priority = min(1.0, case.priority + boost)
            case.save(update_fields=["sla_state", "priority", "updated_at"])
            _changed(case, sla=state)
            changed += 1
    return changed


def _sla_state(case: Case, now) -> str:
    if case.sla_due_at is None or not case.is_active:
        return case.sla_state
    if now >= case.sla_due_at:
        return SlaState.BREACHED
    window = timedelta(minutes=(case.sla_minutes or 0) * NEAR_SHARE)
    near_at = case.sla_near_at or case.sla_due_at - max(window, timedelta(minutes=5))
    if now >= near_at:
        return SlaState.NEAR
    return SlaState.OK


def prune_console_events(days: int, now=None) -> int:
    """Delete console events older than `days` (consoles catch up over minutes, not weeks) and
    remember the newest pruned id."""
    from responses.models import ConsoleEvent, EventHorizon

    cutoff = (now or timezone.now()) - timedelta(days=days)
    newest = ConsoleEvent.objects.filter(created_at__lt=cutoff).order_by("-id").values_list("id", flat=True).first()
    if newest is None:
        return 0
    with transaction.atomic():
        EventHorizon.objects.update_or_create(pk=1, defaults={"pruned_through": newest, "pruned_at": timezone.now()})
        deleted, _ = ConsoleEvent.objects.filter(id__lte=newest).delete()
    return deleted
