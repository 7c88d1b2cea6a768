"""What routing set aside as spam (the noise lane), and how an agent brings a customer back.

A message in the noise lane opens no case (responses.routing). A model that misreads a customer
must not leave them unheard, so every such message is listed for the agents of its teams and can
be opened as a case: the agent's "not spam" is a lane correction that teaches the lane decision
(learning.actions.record_correction), and the case says who brought it back and why.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Q, QuerySet

from learning.actions import record_correction
from learning.models import Classification, Lane
from listening.models import Direction, Message
from responses import access, assignment, event_types, events, routing
from responses.exceptions import CaseNotFound, Conflict, InvalidRequest
from responses.models import Case, CaseStatus, Note, Team
from responses.summaries import case_summary, message_dict, note_dict
from responses.teams import team_connectors, team_for_connector

# The lanes an agent may open a set-aside message in: every lane but the one it was set aside in.
OPEN_LANES = tuple(lane for lane in Lane.values if lane != Lane.NOISE)
MAX_REASON_CHARS = 500


class CaseAlreadyOpen(Conflict):
    """The conversation already has an active case: open that one instead."""

    def __init__(self, case: Case, visible: bool) -> None:
        super().__init__(f"this conversation already has an active case (#{case.pk})" if visible
                         else "this conversation already has an active case in another team")
        self.case_id = case.pk if visible else None

    def as_dict(self) -> dict:
        out: dict = super().as_dict()
        if self.case_id:
            from django.urls import reverse

            out.update(case_id=self.case_id, url=reverse("console:case", kwargs={"case_id": self.case_id}))
        return out


def set_aside(user) -> QuerySet[Classification]:
    """The current noise classifications of the user's teams' inbound messages that no active case
    holds, newest first: a message in a conversation whose case was closed before it came counts
    (routing did not reopen the case for it)."""
    connectors = access.connector_ids(user)
    case = "message__conversation__case"
    unheard = Q(**{f"{case}__isnull": True}) | Q(
        **{f"{case}__status__in": (CaseStatus.RESOLVED, CaseStatus.CLOSED)},
        message__received_at__gt=F(f"{case}__resolved_at"),
    )
    return (Classification.objects
            .filter(unheard, is_current=True, status=Classification.Status.OK, lane=Lane.NOISE,
                    message__direction=Direction.INBOUND, message__connector_id__in=connectors)
            .order_by("-message__sent_at", "-message_id"))


def visible_message(user, message_id: int) -> Message:
    """The message if the user may read it (its connector belongs to one of their teams); a 404
    otherwise, so another team's message ids cannot be probed."""
    message = (Message.objects.select_related("conversation", "connector", "author")
               .filter(pk=message_id, connector_id__in=access.connector_ids(user)).first())
    if message is None:
        raise CaseNotFound("no such message")
    return message


def _team(user, message: Message, case: Case | None) -> Team:
    """The team the case goes to: its own if the user is in it, else the one routing would pick,
    else the user's lowest team that reads the message's connector (so they see what they open)."""
    teams = access.team_ids(user)
    if case is not None and case.team_id in teams:
        return case.team
    routed = team_for_connector(message.connector_id)
    if routed.pk in teams:
        return routed
    owners = sorted(team_id for team_id, ids in team_connectors(teams).items() if message.connector_id in ids)
    if not owners:
        raise CaseNotFound("no such message")
    return Team.objects.get(pk=owners[0])


def open_case_for_message(user, message_id: int, lane: str = Lane.ISSUE, reason: str = "") -> Case:
    """Open (or reopen) the case of a message's conversation in `lane`'s queue of the user's team,
    because the agent says it is not spam. Records the lane correction, adds a note saying who
    opened it from the spam lane and why, and emits the usual console events on commit.

    404 for a message the user cannot read, 400 for our own outbound message or a lane that is not
    one of OPEN_LANES, 409 (with the case's id) when the conversation already has an active case."""
    access.require_reply(user)
    message = visible_message(user, message_id)  # first: to an outsider, every request is a 404
    if lane not in OPEN_LANES:
        raise InvalidRequest(f"lane must be one of {', '.join(OPEN_LANES)}")
    reason = " ".join((reason or "").replace("\x00", "").split())
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(f"the reason is {len(reason)} characters; at most {MAX_REASON_CHARS}")
    if message.direction != Direction.INBOUND:
        raise InvalidRequest("that message is one we sent, not a customer's: there is nothing to open")
    with transaction.atomic():
        case = Case.objects.select_for_update().filter(conversation_id=message.conversation_id).first()
        if case is not None and case.is_active:
            raise CaseAlreadyOpen(case, visible=case.team_id in access.team_ids(user))
        previous_team = case.team_id if case else None
        team = _team(user, message, case)
        record_correction(message, "lane", lane, user=user)
        case, created = routing.open_for_message(message, case, lane, team)
        note = Note.objects.create(case=case, author=user, text=_note_text(user, message, lane, reason))
        if previous_team and previous_team != case.team_id:
            events.emit(event_types.CASE_REMOVED, {"case_id": case.pk}, team_id=previous_team, case_id=case.pk)
        events.emit(event_types.MESSAGE_CREATED, {"message": message_dict(message), "case_id": case.pk},
                    team_id=case.team_id, case_id=case.pk)
        events.emit(event_types.NOTE_CREATED, {"note": note_dict(note), "case_id": case.pk}, team_id=case.team_id,
                    case_id=case.pk)
        events.emit(event_types.CASE_CREATED if created else event_types.CASE_UPDATED,
                    {"case": case_summary(case)}, team_id=case.team_id, case_id=case.pk)
        if case.assignee_id is None and case.queue_id and case.queue.auto_assign:
            assignment.auto_assign(case)
    return case


def _note_text(user, message: Message, lane: str, reason: str) -> str:
    who = user.get_full_name() or user.get_username()
    when = message.sent_at.strftime("%Y-%m-%d %H:%M %Z")
    text = f"{who} opened this from Spam as {Lane(lane).label}: the message of {when} is not spam."
    return f"{text} Why: {reason}" if reason else text
