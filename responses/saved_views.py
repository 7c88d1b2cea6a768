"""Saved views: a search (text and filters, responses.search) kept under a name, for its owner or
shared with a team by one of the team's supervisors, and listed in the sidebar with a count.

Who sees a view: its owner, and the members of the team it is shared with. Who may rename or
delete it: its owner, a supervisor of that team, or an admin. A view the user cannot see does not
exist for them (404); one they see but may not change answers 403.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from responses import access, search
from responses.exceptions import CaseNotFound, Conflict, InvalidRequest, NotAllowed
from responses.models import ConsoleEvent, Role, SavedView

MAX_VIEWS = 50  # per owner
MAX_NAME = 60
COUNT_TTL = 300  # a count is reused until a console event the user could see makes it stale, at most this long


def visible_views(user) -> QuerySet[SavedView]:
    return (SavedView.objects.filter(Q(owner=user) | Q(team_id__in=access.team_ids(user)))
            .select_related("team", "owner").order_by("name", "id"))


def get_view(user, view_id) -> SavedView:
    try:
        view_id = int(view_id)
    except (TypeError, ValueError):
        raise CaseNotFound("no such view")
    view = visible_views(user).filter(pk=view_id).first()
    if view is None:
        raise CaseNotFound("no such view")
    return view


def can_change(user, view: SavedView) -> bool:
    if view.owner_id == user.pk:
        return True
    role = access.role_of(user)
    if role == Role.ADMIN:
        return True
    return role == Role.SUPERVISOR and view.team_id is not None and view.team_id in access.team_ids(user)


def _name(name) -> str:
    if not isinstance(name, str):
        raise InvalidRequest("name must be text")
    name = " ".join(search.clean_text(name).split())
    if not name:
        raise InvalidRequest("name is required")
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"name is {len(name)} characters; at most {MAX_NAME}")
    return name


def _team(user, team_id) -> int | None:
    """The team to share with: one of the user's teams, and only supervisors and admins share."""
    if team_id in (None, "", 0, "0"):
        return None
    try:
        team_id = int(team_id)
    except (TypeError, ValueError):
        raise InvalidRequest("team must be a team id")
    if not access.is_supervisor(user):
        raise NotAllowed("only supervisors and admins share views with a team")
    if team_id not in access.team_ids(user):
        raise InvalidRequest("you can share a view only with one of your teams")
    return team_id


def create_view(user, name, query: str, filters: dict, team=None) -> SavedView:
    """Saves the search under `name` (400 for a bad search or name, 409 for a name taken)."""
    name = _name(name)
    parsed = search.parse_query(query or "")
    parsed_filters = search.parse_filters(filters)
    if parsed.empty and not parsed_filters.any:
        raise InvalidRequest("a view needs words to search or at least one filter")
    team_id = _team(user, team)
    if SavedView.objects.filter(owner=user).count() >= MAX_VIEWS:
        raise InvalidRequest(f"you have {MAX_VIEWS} views already; delete one first")
    try:
        with transaction.atomic():
            return SavedView.objects.create(owner=user, team_id=team_id, name=name,
                                            query=search.clean_text(query or "").strip(),
                                            filters=parsed_filters.as_dict())
    except IntegrityError:
        raise Conflict(f"you already have a view named {name!r}")


def rename_view(user, view_id, name) -> SavedView:
    view = get_view(user, view_id)
    if not can_change(user, view):
        raise NotAllowed("only its owner or the team's supervisors can rename this view")
    view.name = _name(name)
    try:
        with transaction.atomic():
            view.save(update_fields=["name", "updated_at"])
    except IntegrityError:
        raise Conflict(f"a view named {view.name!r} exists already")
    return view


def delete_view(user, view_id) -> None:
    view = get_view(user, view_id)
    if not can_change(user, view):
        raise NotAllowed("only its owner or the team's supervisors can delete this view")
    view.delete()


def view_search(view: SavedView) -> tuple[search.Query, search.Filters]:
    """The view's search. A stored view always parsed when saved; should the rules have changed
    since, it counts as nothing rather than failing the sidebar."""
    try:
        return search.parse_query(view.query), search.parse_filters(view.filters or {})
    except InvalidRequest:
        return search.Query(), search.Filters()


def count_of(user, view: SavedView, generation: int) -> int:
    """The view's count for this user (a shared view counts what each member may see). Every change
    to a case writes a console event, so the newest event id the user could see (`generation`)
    keys the cached count: a poll without news costs a cache read, any news a fresh count."""
    key = f"cxm:view-count:{view.pk}:{user.pk}:{view.updated_at.timestamp()}:{generation}"
    value = cache.get(key)
    if value is None:
        query, filters = view_search(view)
        value = search.count(user, query, filters) if (not query.empty or filters.any) else 0
        cache.set(key, value, COUNT_TTL)
    return value


def sidebar(user) -> list[dict]:
    """The user's views with their counts, as the sidebar and its refresh show them."""
    generation = (ConsoleEvent.objects.filter(Q(team_id__in=access.team_ids(user)) | Q(user_id=user.pk))
                  .order_by("-id").values_list("id", flat=True).first()) or 0
    out = []
    for view in visible_views(user):
        n = count_of(user, view, generation)
        out.append({"id": view.pk, "name": view.name, "shared": view.team_id is not None,
                    "team": view.team.name if view.team_id else "", "count": n,
                    "count_label": f"{search.COUNT_CAP:,}+" if n > search.COUNT_CAP else str(n),
                    "can_change": can_change(user, view)})
    return out
