"""The inbox: the user's queues and counts, the case table, its row partial, bulk actions,
presence and "next case"."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Case as Switch, Count, F, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from learning.models import Classification
from responses import access, assignment, cases as case_actions, noise
from responses.exceptions import InvalidRequest
from responses.models import ACTIVE_STATUSES, Case, CaseStatus, Presence, Queue, SlaState, Team
from responses.summaries import chips
from responses.views.base import body, console_context, console_view, done, object_id, text

PAGE_SIZE = 100
CLOSED = (CaseStatus.RESOLVED, CaseStatus.CLOSED)
NAMED_FILTERS = {"mine": "Mine", "unassigned": "Unassigned", "held": "On hold", "snoozed": "Snoozed",
                 "resolved": "Resolved"}
# Short text badges (coloured per channel in console.css): they render everywhere, unlike emoji.
CHANNEL_ICONS = {
    "web": "WEB", "webhook": "API", "telegram": "TG", "whatsapp": "WA", "messenger": "FB", "facebook": "FB",
    "instagram": "IG", "twitter": "X", "x": "X", "rss": "RSS", "email": "@", "sms": "SMS", "review": "★",
    "appstore": "APP", "forum": "FRM", "import": "IMP", "slack": "SLK",
    "mastodon": "MAS",
    "reddit": "RDT",
    "x_dm": "XDM",
    "google_play": "GP", "app_store": "iOS",
}


def channel_icon(channel: str) -> str:
    return CHANNEL_ICONS.get(channel, (channel or "?")[:3].upper())


def parse_filter(value: str) -> str:
    value = (value or "").strip()
    if value and value not in NAMED_FILTERS:
        object_id_or_400(value)
    return value


def object_id_or_400(value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise InvalidRequest("queue must be a queue id, mine, unassigned, held, snoozed or resolved")
    return int(value)


def filtered_cases(user, name: str) -> QuerySet[Case]:
    cases = access.visible_cases(user)
    if name == "resolved":
        return cases.filter(status__in=CLOSED).order_by(F("resolved_at").desc(nulls_last=True), "-id")
    cases = cases.filter(status__in=ACTIVE_STATUSES)
    if name == "snoozed":  # the cases snoozed by responses.snooze, the soonest back first
        return cases.filter(snoozed=True).order_by(F("snoozed_until").asc(nulls_last=True), "id")
    cases = cases.filter(snoozed=False)
    if name == "mine":
        cases = cases.filter(assignee=user)
    elif name == "unassigned":
        cases = cases.filter(assignee__isnull=True)
    elif name == "held":
        cases = cases.filter(awaiting_assignment=True)
    elif name:
        cases = cases.filter(queue_id=int(name))
    return inbox_order(cases)


def inbox_order(cases: QuerySet[Case]) -> QuerySet[Case]:
    """Breached SLAs first, then near breach, then by priority, then the longest wait."""
    sla_rank = Switch(When(sla_state=SlaState.BREACHED, then=Value(0)), When(sla_state=SlaState.NEAR, then=Value(1)),
                     default=Value(2), output_field=IntegerField())
    return cases.annotate(sla_rank=sla_rank).order_by("sla_rank", "-priority",
                                                      F("waiting_since").asc(nulls_last=True), "id")


def with_rows(cases) -> list[Case]:
    """Attach the chips of each case's last message: one query for the whole page."""
    cases = list(cases)
    message_ids = [c.last_message_id for c in cases if c.last_message_id]
    current = {c.message_id: c for c in Classification.objects.filter(message_id__in=message_ids, is_current=True)}
    for case in cases:
        case.chips = chips(current.get(case.last_message_id))
        # The last message's reason explains the case's lane only when it decided that lane.
        case.lane_reason = case.chips.get("lane_reason", "") if case.chips.get("lane") == case.lane else ""
        case.icon = channel_icon(case.conversation.channel)
    return cases


def row_queryset(cases: QuerySet[Case]) -> QuerySet[Case]:
    return cases.select_related("conversation__contact", "queue", "assignee", "last_message")


def counts_for(user) -> dict:
    visible = access.visible_cases(user)
    active = visible.filter(status__in=ACTIVE_STATUSES, snoozed=False)
    snoozed = visible.filter(status__in=ACTIVE_STATUSES, snoozed=True).count()
    totals = active.aggregate(
        active=Count("id"), mine=Count("id", filter=Q(assignee=user)),
        unassigned=Count("id", filter=Q(assignee__isnull=True)), held=Count("id", filter=Q(awaiting_assignment=True)),
    )
    queues = {str(row["queue_id"]): row["n"] for row in
              active.filter(queue__isnull=False).values("queue_id").annotate(n=Count("id")).order_by()}
    return {**totals, "snoozed": snoozed, "resolved": visible.filter(status__in=CLOSED).count(), "queues": queues,
            "noise": noise.set_aside(user).count()}


@console_view("GET")
def inbox(request: HttpRequest) -> HttpResponse:
    current = parse_filter(request.GET.get("queue", ""))
    page = Paginator(row_queryset(filtered_cases(request.user, current)), PAGE_SIZE).get_page(request.GET.get("page"))
    teams = Team.objects.filter(pk__in=access.team_ids(request.user)).order_by("name")
    queues = Queue.objects.filter(team__in=teams).select_related("team").order_by("team__name", "position", "name")
    counts = counts_for(request.user)
    base = console_context(request)
    for queue in queues:
        queue.count = counts["queues"].get(str(queue.pk), 0)
    title = NAMED_FILTERS.get(current, "")
    if current and not title:
        title = next((f"{q.team.name} / {q.name}" for q in queues if str(q.pk) == current), "Queue")
    context = {
        **base,
        "page": page,
        "cases": with_rows(page.object_list),
        "queues": queues,
        "counts": counts,
        "filter": current,
        "title": title or "All active",
        "named_filters": NAMED_FILTERS,
        "presences": Presence.choices,
        "agents": _assignable_agents(teams) if base["is_supervisor"] else [],
        "multi_team": len(teams) > 1,
    }
    return render(request, "console/inbox.html", context)


def _assignable_agents(teams):
    from django.contrib.auth import get_user_model

    return (get_user_model().objects.filter(cxm_teams__in=teams, is_active=True,
                                            cxm_profile__role__in=assignment.ASSIGNABLE_ROLES)
            .distinct().order_by("first_name", "username"))


@console_view("GET")
def case_row(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    case = with_rows(row_queryset(Case.objects.filter(pk=case.pk)))[0]
    return render(request, "console/_case_row.html", {"case": case, **console_context(request)})


@console_view("GET")
def counts(request: HttpRequest) -> JsonResponse:
    return JsonResponse(counts_for(request.user))


@console_view("POST")
def presence(request: HttpRequest) -> HttpResponse:
    state = text(body(request), "presence", max_chars=20)
    profile = assignment.set_presence(request.user, state)
    return done(request, {"presence": profile.presence}, reverse("console:inbox"))


@console_view("POST")
def bulk(request: HttpRequest) -> HttpResponse:
    data = body(request)
    ids = data.get("ids") or []
    if isinstance(ids, str | int):
        ids = [ids]
    if not isinstance(ids, list):
        raise InvalidRequest("ids must be a list of case ids")
    action = text(data, "action", max_chars=20)
    value = data.get("value")
    if action == "assign":
        value = data.get("assignee") or value or "me"
    elif action == "tag":
        value = data.get("tags") or value or ""
        if not isinstance(value, str | list):
            raise InvalidRequest("tags must be text or a list")
    if not isinstance(value, str | list | int | type(None)):
        raise InvalidRequest("value must be text")
    if any(not isinstance(i, str | int) for i in ids):
        raise InvalidRequest("ids must be case ids")
    count = case_actions.bulk(request.user, ids, action, value)
    return done(request, {"count": count}, reverse("console:inbox"))


@console_view("GET")
def next_case(request: HttpRequest) -> HttpResponse:
    """The case after `after` in the inbox order of the user's active cases (the first one when
    `after` is not there); the inbox when there is none."""
    after = request.GET.get("after", "")
    ids = list(filtered_cases(request.user, "").values_list("id", flat=True)[:2000])
    target = None
    if after.isascii() and after.isdigit() and int(after) in ids:
        position = ids.index(int(after))
        rest = ids[position + 1:] or ids[:position]
        target = rest[0] if rest else None
    elif ids:
        target = ids[0]
    if target is None:
        return redirect("console:inbox")
    return redirect("console:case", case_id=target)
