"""Who may see and do what. Every view, consumer and action asks here; nothing else decides.

An agent, supervisor or brand manager sees the cases of their teams only; an admin (or a Django
superuser) sees every team. A case outside the user's teams does not exist for them: lookups
raise CaseNotFound (404), so its id cannot be probed.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from responses.exceptions import CaseNotFound, NotAllowed
from responses.models import AgentProfile, Case, Role, Team

REPLY_ROLES = {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}
SUPERVISE_ROLES = {Role.SUPERVISOR, Role.ADMIN}


def role_of(user: AbstractBaseUser) -> str:
    if not user.is_authenticated or not user.is_active:
        return ""
    if user.is_superuser:
        return Role.ADMIN
    profile = AgentProfile.objects.filter(user=user).only("role").first()
    return profile.role if profile else ""


def team_ids(user: AbstractBaseUser) -> set[int]:
    role = role_of(user)
    if not role:
        return set()
    if role == Role.ADMIN:
        return set(Team.objects.values_list("id", flat=True))
    return set(Team.objects.filter(members=user).values_list("id", flat=True))


def connector_ids(user: AbstractBaseUser) -> set[int]:
    """Connectors whose messages the user may read: every one for an admin; otherwise those of
    the user's teams (the default team's include those no team owns, as routing does)."""
    from listening.models import Connector
    from responses.teams import team_connectors

    if role_of(user) == Role.ADMIN:
        return set(Connector.objects.values_list("id", flat=True))
    teams = team_ids(user)
    return set().union(*team_connectors(teams).values()) if teams else set()


def visible_cases(user: AbstractBaseUser) -> QuerySet[Case]:
    return Case.objects.filter(team_id__in=team_ids(user))


def get_case(user: AbstractBaseUser, case_id, *, for_update: bool = False) -> Case:
    """The case if the user may see it; CaseNotFound otherwise (also for malformed ids)."""
    try:
        case_id = int(case_id)
    except (TypeError, ValueError):
        raise CaseNotFound("no such case")
    cases = visible_cases(user)
    if for_update:
        cases = cases.select_for_update()
    case = cases.filter(pk=case_id).first()
    if case is None:
        raise CaseNotFound("no such case")
    return case


def can_use_console(user: AbstractBaseUser) -> bool:
    return bool(role_of(user))


def require_reply(user: AbstractBaseUser) -> None:
    if role_of(user) not in REPLY_ROLES:
        raise NotAllowed("your role cannot reply to or change cases")


def require_supervisor(user: AbstractBaseUser) -> None:
    if role_of(user) not in SUPERVISE_ROLES:
        raise NotAllowed("only supervisors and admins can do this")


def require_admin(user: AbstractBaseUser) -> None:
    if role_of(user) != Role.ADMIN:
        raise NotAllowed("only admins can do this")


def admin_q() -> Q:
    """Users who are admins: a superuser or an admin profile (for querying the user model)."""
    return Q(is_superuser=True) | Q(cxm_profile__role=Role.ADMIN)


def is_supervisor(user: AbstractBaseUser) -> bool:
    return role_of(user) in SUPERVISE_ROLES
