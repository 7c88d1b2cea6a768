"""Search over conversations, notes and customers, and saved views (responses.search,
responses.saved_views): the page, its JSON, and the views' create, rename, delete and counts."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from responses import access, saved_views, search
from responses.models import Team
from responses.templatetags.search import channel_choices
from responses.views.base import body, console_context, console_view, done, object_id, text, wants_json

DAY_CHOICES = ((1, "The last day"), (7, "The last 7 days"), (30, "The last 30 days"), (90, "The last 90 days"))


def _params(request: HttpRequest) -> tuple[str, dict, object]:
    """The search in the request: a saved view's (?view=id) or the form's own."""
    view = None
    if request.GET.get("view"):
        view = saved_views.get_view(request.user, object_id(request.GET["view"], "view"))
        return view.query, dict(view.filters or {}), view
    return request.GET.get("q", ""), {name: request.GET.get(name, "") for name in search.FILTER_NAMES}, None


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit", "")
    return min(int(raw), 100) if raw.isascii() and raw.isdigit() and int(raw) > 0 else 20


@console_view("GET")
def search_page(request: HttpRequest) -> HttpResponse:
    raw, raw_filters, view = _params(request)
    query = search.parse_query(raw)
    filters = search.parse_filters(raw_filters)
    limit = _limit(request)
    results = search.search(request.user, query, filters, limit=limit)
    if wants_json(request):
        return JsonResponse(search.as_json(results))
    base = console_context(request)
    teams = Team.objects.filter(pk__in=access.team_ids(request.user)).order_by("name")
    current = {"q": raw, **filters.as_dict()}
    context = {
        **base,
        "q": raw,
        "filters": filters,
        "results": results,
        "view": view,
        "view_can_change": bool(view and saved_views.can_change(request.user, view)),
        "day_choices": DAY_CHOICES,
        "channels": channel_choices(),
        "lanes": search.LANE_CHOICES.items(),
        "statuses": search.STATUS_CHOICES.items(),
        "assignees": _assignees(request.user, teams),
        "share_teams": teams if base["is_supervisor"] else [],
        "more_url": "?" + urlencode({**current, "limit": min(limit + 20, 100)}) if results.more and limit < 100 else "",
        "current_query": urlencode(current),
    }
    return render(request, "console/search.html", context)


def _assignees(user, teams):
    from django.contrib.auth import get_user_model

    return (get_user_model().objects.filter(cxm_teams__in=teams, is_active=True).distinct()
            .order_by("first_name", "username"))


@console_view("GET", "POST")
def views(request: HttpRequest) -> HttpResponse:
    """GET: the user's views with their counts (the sidebar's refresh). POST: save a search."""
    if request.method == "GET":
        return JsonResponse({"views": saved_views.sidebar(request.user)})
    data = body(request)
    filters = data.get("filters")
    if filters is None:
        filters = {name: data.get(name, "") for name in search.FILTER_NAMES}
    if not isinstance(filters, dict):
        raise search.InvalidRequest("filters must be an object")
    view = saved_views.create_view(request.user, data.get("name", ""), text(data, "q", required=False,
                                   max_chars=search.MAX_QUERY_CHARS), filters, data.get("team"))
    if wants_json(request):
        return JsonResponse({"ok": True, "id": view.pk, "name": view.name}, status=201)
    return redirect(f"{reverse('console:search')}?view={view.pk}")


@console_view("POST")
def view_rename(request: HttpRequest, view_id: str) -> HttpResponse:
    view = saved_views.rename_view(request.user, object_id(view_id, "view"), body(request).get("name", ""))
    return done(request, {"id": view.pk, "name": view.name}, f"{reverse('console:search')}?view={view.pk}")


@console_view("POST")
def view_delete(request: HttpRequest, view_id: str) -> HttpResponse:
    saved_views.delete_view(request.user, object_id(view_id, "view"))
    return done(request, {}, reverse("console:search"))
