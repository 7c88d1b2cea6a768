"""The brand managers' dashboards (Insight): the page, one JSON (or CSV) answer per panel, the
messages behind a clicked chart point, and a PDF of the snapshot the browser composed.

The panels come from their registry (insight.panels); insight.filters parses and bounds the
filters and applies the user's access; this module checks who may look, parses the request and renders.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from cxm.exceptions import CXMError
from insight import dashboards as insight, export as insight_export
from insight.panels import PANELS, Panel, renderers
from learning import rollups
from learning.models import Lane, Term
from responses.exceptions import InvalidRequest, NotAllowed
from responses.views.base import console_context, console_view, wants_json
from responses.views.inbox import channel_icon

DRILL_PARAMS = ("bucket", "sentiment", "intent", "emotion", "lane", "channel", "term", "before")
# A request that says it is bigger than the largest snapshot is refused without decoding it.
MAX_SNAPSHOT_REQUEST = insight_export.MAX_PNG_BYTES + 64 * 1024


class PanelNotFound(CXMError):
    status_code = 404
    code = "not_found"


def find_panel(name: str) -> Panel:
    """The declared panel of that name, or 404 naming the panels there are."""
    declared = PANELS.get(name)
    if declared is None:
        raise PanelNotFound(f"no panel named {name[:40]!r}; panels are {', '.join(PANELS)}")
    return declared


def insight_view(*methods: str) -> Callable:
    """console_view (login, console access, methods, CSP), and only for the roles that read
    dashboards: supervisors, brand managers and admins; others get 403."""

    def decorate(view: Callable) -> Callable:
        @console_view(*methods)
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not insight.can_view(request.user):
                if wants_json(request) or request.method != "GET" or request.GET.get("format"):
                    raise NotAllowed("dashboards are for supervisors, brand managers and admins")
                return render(request, "insight/no_access.html", console_context(request), status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def can_view_context(request: HttpRequest) -> dict:
    """Template context for every page: whether to show the Dashboards link. Lazy (a callable),
    so pages that never ask cost no query."""
    return {"can_view_insight": lambda: request.user.is_authenticated and insight.can_view(request.user)}


# --- The page ------------------------------------------------------------------------------------


@insight_view("GET")
def dashboard(request: HttpRequest) -> HttpResponse:
    options = insight.options(request.user)
    error, filters = "", None
    try:
        filters = insight.parse_filters(request.GET, request.user)
    except insight.InvalidFilter as exc:
        error = exc.reason
    context = {
        **console_context(request),
        "options": options,
        "chosen": _chosen(request, filters),
        "presets": _presets(request),
        "filters": filters,
        "error": error,
        "summary": insight_export.describe(filters, options) if filters else "",
        "query": filters.as_query() if filters else "",
        "panels": list(PANELS.values()),
        "panel_renderers": renderers(),  # json_script: the JavaScript draws each panel with its renderer
        "lane_choices": [{"id": value, "name": str(label)} for value, label in Lane.choices],
    }
    # The console's CSP, unrelaxed: Plotly.js's style rules come from static/insight/plotly-csp.css
    # (see the template) and the snapshot draws SVG data: images, which img-src already allows.
    return render(request, "insight/dashboard.html", context, status=400 if error else 200)


def _chosen(request: HttpRequest, filters) -> dict:
    """What the filter form shows as chosen: the request's own values (so a refused value stays
    in the form next to the reason), else the period the filters defaulted to."""
    get = request.GET
    return {
        "from": get.get("from") or (filters.start.isoformat() if filters else ""),
        "to": get.get("to") or (filters.end.isoformat() if filters else ""),
        "granularity": get.get("granularity") or (filters.granularity if filters else "day"),
        "term": get.get("term", ""), "compare": get.get("compare", "1") not in ("0", "false", "off"),
        **{name: get.getlist(name) for name in ("channel", "connector", "team", "lane", "language")},
    }


def _presets(request: HttpRequest) -> list[tuple[str, str]]:
    """Quick ranges ending today, keeping the other filters (hourly only where allowed)."""
    today = timezone.now().astimezone(rollups.reporting_tz()).date()
    presets = []
    for label, days in (("Today", 1), ("7 days", 7), ("30 days", 30), ("90 days", 90), ("12 months", 365)):
        query = request.GET.copy()
        query["from"], query["to"] = (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
        if days > insight.MAX_HOURLY_DAYS and query.get("granularity") == "hour":
            query["granularity"] = "day"
        presets.append((label, query.urlencode()))
    return presets


# --- Panels --------------------------------------------------------------------------------------


@insight_view("GET")
def panel(request: HttpRequest, name: str) -> HttpResponse:
    declared = find_panel(name)
    output = request.GET.get("format", "json")
    if output not in ("json", "csv"):
        raise InvalidRequest("format is json or csv")
    filters = insight.parse_filters(request.GET, request.user)
    data = declared.query(filters)
    if output == "csv":
        response = HttpResponse(insight_export.panel_csv(declared, data), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{_file_name(name, filters)}.csv"'
        return response
    return JsonResponse({"panel": name, "period": _period(filters), **data})


def _period(filters) -> dict:
    previous = filters.previous()
    return {"from": filters.start.isoformat(), "to": filters.end.isoformat(), "granularity": filters.granularity,
            "compare": filters.compare, "previous_from": previous.start.isoformat(),
            "previous_to": previous.end.isoformat()}


def _file_name(name: str, filters) -> str:
    return f"cxm-{name}-{filters.start:%Y%m%d}-{filters.end:%Y%m%d}"


# --- Drill-down ----------------------------------------------------------------------------------


@insight_view("GET")
def messages(request: HttpRequest) -> HttpResponse:
    as_json = wants_json(request) or request.GET.get("format") == "json"
    try:
        filters = insight.parse_filters(request.GET, request.user)
        data = insight.drilldown(filters, request.GET, request.user)
    except insight.InvalidFilter as exc:
        if as_json:
            raise
        return render(request, "insight/messages.html", {**console_context(request), "error": exc.reason,
                                                         "point": _point(request)}, status=400)
    if as_json:
        return JsonResponse(data)
    tz = rollups.reporting_tz()
    for message in data["messages"]:
        message["sent_local"] = datetime.fromisoformat(message["sent_at"]).astimezone(tz)
        message["icon"] = channel_icon(message["channel"])
    context = {
        **console_context(request),
        "rows": data["messages"],  # not "messages": base.html shows Django's flash messages under that name
        "next_query": _next_query(request, data["next"]),
        "point": _point(request),
        "summary": insight_export.describe(filters, insight.options(request.user)),
        "back_query": filters.as_query(),
    }
    return render(request, "insight/messages.html", context)


def _point(request: HttpRequest) -> list[tuple[str, str]]:
    """The clicked point's params, for the page's heading (a term by its name)."""
    point = [(key, request.GET[key]) for key in DRILL_PARAMS if key != "before" and request.GET.get(key)]
    term = request.GET.get("term", "")
    plausible = term.isascii() and term.isdigit() and len(term) <= 18
    name = Term.objects.filter(pk=int(term)).values_list("name", flat=True).first() if plausible else None
    lanes = dict(Lane.choices)
    return [(key, name if key == "term" and name else str(lanes.get(value, value)) if key == "lane" else value)
            for key, value in point]


def _next_query(request: HttpRequest, cursor: str | None) -> str:
    if not cursor:
        return ""
    query = request.GET.copy()
    query["before"] = cursor
    query.pop("format", None)
    return query.urlencode()


# --- PDF snapshot --------------------------------------------------------------------------------


@insight_view("POST")
def snapshot_pdf(request: HttpRequest) -> HttpResponse:
    """The PNG the page composed of itself (field `image`), as a PDF with the title, the filters
    (from the query string, described by the server) and the time."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_SNAPSHOT_REQUEST:
        raise InvalidRequest("the snapshot is larger than 15 MB")
    filters = insight.parse_filters(request.GET, request.user)
    image = insight_export.snapshot_image(request.FILES.get("image"))
    user = request.user
    pdf = insight_export.snapshot_pdf(
        image, title="CXM dashboards", summary=insight_export.describe(filters, insight.options(user)),
        author=user.get_full_name() or user.get_username(),
    )
    response = HttpResponse(pdf, content_type="application/pdf")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="cxm-dashboards-{stamp}.pdf"'
    return response
