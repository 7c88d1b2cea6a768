"""Assignment: round-robin across available agents with room, matching skills; a hold queue
when everyone is at capacity, drained as agents free up; reassignment by supervisors.

The chosen agent's profile row is locked while their load is counted, so two routers assigning
at once cannot push an agent past their capacity.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from responses import access, event_types, events
from responses.exceptions import InvalidRequest, NotAllowed
from responses.models import ACTIVE_STATUSES, AgentProfile, Case, Presence, Role, Team
from responses.summaries import case_summary, user_dict

ASSIGNABLE_ROLES = (Role.AGENT, Role.SUPERVISOR)
DRAIN_BATCH = 200


def load_of(user_ids) -> dict[int, int]:
    rows = (Case.objects.filter(assignee_id__in=list(user_ids), status__in=ACTIVE_STATUSES)
            .values("assignee_id").annotate(n=Count("id")))
    return {r["assignee_id"]: r["n"] for r in rows}


def can_hold_cases(user, team_id: int) -> bool:
    """Whether the user may be assigned cases of this team at all (member, right role)."""
    return Team.objects.filter(pk=team_id, members=user).exists() and access.role_of(user) in (
        *ASSIGNABLE_ROLES, Role.ADMIN)


def _candidates(case: Case, language: str | None = None):
    language = _case_language(case) if language is None else language
    channel = case.conversation.channel
    profiles = (AgentProfile.objects.filter(user__cxm_teams=case.team_id, user__is_active=True,
                                            role__in=ASSIGNABLE_ROLES, presence=Presence.AVAILABLE)
                .select_related("user").order_by(F("last_assigned_at").asc(nulls_first=True), "id"))
    return [p for p in profiles if _skilled(p, language, channel)]


def _skilled(profile: AgentProfile, language: str, channel: str) -> bool:
    if profile.languages and language and language != "und" and language not in profile.languages:
        return False
    return not (profile.channels and channel not in profile.channels)


def _case_language(case: Case) -> str:
    from learning.models import Classification

    if not case.last_message_id:
        return ""
    row = Classification.objects.filter(message_id=case.last_message_id, is_current=True).only("language").first()
    return row.language if row else ""


def auto_assign(case: Case, *, announce: bool = True, language: str | None = None) -> bool:
    """Give the case to the next available agent with room, or put it on hold. Runs inside the
    caller's transaction; True if assigned. announce=False: the caller emits the case's event
    itself, after this (routing: one case.created carrying the assignee); `language`, when the
    caller knows the last message's, saves looking it up."""
    candidates = _candidates(case, language)
    load = load_of([p.user_id for p in candidates])
    for profile in candidates:
        if load.get(profile.user_id, 0) >= profile.capacity:
            continue
        locked = AgentProfile.objects.select_for_update().get(pk=profile.pk)
        if load_of([locked.user_id]).get(locked.user_id, 0) >= locked.capacity or locked.presence != Presence.AVAILABLE:
            continue
        _assign(case, profile.user, by=None, announce=announce)
        return True
    if not case.awaiting_assignment:
        Case.objects.filter(pk=case.pk).update(awaiting_assignment=True)
        case.awaiting_assignment = True
        if announce:
            events.emit(event_types.CASE_UPDATED, {"case": case_summary(case)}, team_id=case.team_id, case_id=case.pk)
    return False


def _assign(case: Case, user, by, announce: bool = True) -> None:
    now = timezone.now()
    case.assignee = user
    case.awaiting_assignment = False
    if case.status == "new":
        case.status = "open"
    Case.objects.filter(pk=case.pk).update(assignee=user, awaiting_assignment=False, status=case.status,
                                           updated_at=now)
    if user is not None:
        AgentProfile.objects.filter(user=user).update(last_assigned_at=now)
    if announce:
        payload = {"case": case_summary(case), "by": user_dict(by)}
        events.emit(event_types.CASE_UPDATED, payload, team_id=case.team_id, case_id=case.pk)
    if user is not None and (by is None or by.pk != user.pk):
        events.emit(event_types.CASE_ASSIGNED, {"case_id": case.pk, "by": user_dict(by)}, user_id=user.pk,
                    case_id=case.pk)


def assign_case(case_id, assignee, by) -> Case:
    """Assign (or unassign, with assignee None) a case. Agents may take a case of their team for
    themselves; supervisors and admins may give it to any member of its team."""
    access.require_reply(by)
    with transaction.atomic():
        case = access.get_case(by, case_id, for_update=True)
        if assignee is None or assignee.pk != by.pk:
            access.require_supervisor(by)
        if assignee is not None and not can_hold_cases(assignee, case.team_id):
            raise InvalidRequest(f"{assignee.get_username()} is not an agent of this case's team")
        if not case.is_active:
            raise InvalidRequest("this case is resolved; reopen it first")
        _assign(case, assignee, by)
    if assignee is None:
        drain_hold_queue([case.team_id])
    return case


def set_presence(user, presence: str) -> AgentProfile:
    if presence not in Presence.values:
        raise InvalidRequest(f"presence must be one of {', '.join(Presence.values)}")
    profile = AgentProfile.objects.filter(user=user).first()
    if profile is None:
        raise NotAllowed("you have no agent profile")
    with transaction.atomic():
        AgentProfile.objects.filter(pk=profile.pk).update(presence=presence, presence_changed_at=timezone.now())
        profile.presence = presence
        for team_id in access.team_ids(user) if access.role_of(user) != Role.ADMIN else []:
            events.emit(event_types.AGENT_PRESENCE, {"agent": user_dict(user), "presence": presence}, team_id=team_id)
    if presence == Presence.AVAILABLE:
        drain_hold_queue(list(Team.objects.filter(members=user).values_list("id", flat=True)))
    return profile


def drain_hold_queue(team_ids=None) -> int:
    """Assign held cases, most urgent first, while agents have room. Returns how many."""
    held = Case.objects.filter(awaiting_assignment=True, assignee__isnull=True, status__in=ACTIVE_STATUSES)
    if team_ids is not None:
        held = held.filter(team_id__in=list(team_ids))
    assigned = 0
    for team_id in set(held.values_list("team_id", flat=True)):
        ids = held.filter(team_id=team_id).order_by("-priority", "opened_at").values_list("id", flat=True)
        for case_id in ids[:DRAIN_BATCH]:
            with transaction.atomic():
                case = (Case.objects.select_for_update(of=("self",)).select_related("conversation", "team", "queue")
                        .filter(pk=case_id, assignee__isnull=True).first())
                if case is None:
                    continue
                if not auto_assign(case):
                    break  # nobody in this team has room; the next freed seat drains again
                assigned += 1
    return assigned


def teams_with_room() -> list[int]:
    """Teams where some available agent is below capacity and cases are held."""
    held_teams = set(Case.objects.filter(awaiting_assignment=True, status__in=ACTIVE_STATUSES)
                     .values_list("team_id", flat=True))
    return [t for t in held_teams if _has_room(t)]


def _has_room(team_id: int) -> bool:
    profiles = list(AgentProfile.objects.filter(user__cxm_teams=team_id, presence=Presence.AVAILABLE,
                                                role__in=ASSIGNABLE_ROLES))
    load = load_of([p.user_id for p in profiles])
    return any(load.get(p.user_id, 0) < p.capacity for p in profiles)

