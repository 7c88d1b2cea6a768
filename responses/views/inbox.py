"""The inbox: the user's queues and counts, the case table, its row partial, bulk actions,
presence and "next case"."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Case as Switch, Count, F, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from learning.models import Classification, Intent, Lane
from listening.connectors import presentation
from responses import access, assignment, cases as case_actions, noise
from responses.exceptions import InvalidRequest
from responses.models import (
    ACTIVE_STATUSES,
    Case,
    CaseStatus,
    Presence,
    ProactiveMessage,
    Queue,
    Role,
    SignalRuleFiring,
    SlaState,
    Team,
)
from responses.proactive import PROACTIVE_TAG
from responses.summaries import chips
from responses.views.base import body, console_context, console_view, done, object_id, text

PAGE_SIZE = 100
CLOSED = (CaseStatus.RESOLVED, CaseStatus.CLOSED)
NAMED_FILTERS = {"mine": "Mine", "unassigned": "Unassigned", "held": "On hold", "snoozed": "Snoozed",
                 "resolved": "Resolved"}


def channel_icon(channel: str) -> str:
    """The channel's name as its connector declares it (listening.connectors.presentation); the
    badge itself is `{% channel_badge %}` (responses.templatetags.console_words)."""
    return presentation(channel).label


def parse_filter(value: str) -> str:
    value = (value or "").strip()
    if value and value not in NAMED_FILTERS:
        object_id_or_400(value)
    return value


def object_id_or_400(value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise InvalidRequest("queue must be a queue id, mine, unassigned, held, snoozed or resolved")
    return int(value)


def _scope(user, name: str) -> Q:
    """The active cases a named view shows; the sidebar counts use the same words."""
    if name == "mine":
        return Q(assignee=user)
    if name == "unassigned":
        return Q(assignee__isnull=True)
    if name == "held":
        return Q(awaiting_assignment=True)
    if name:
        return Q(queue_id=int(name))
    return Q()


def filtered_cases(user, name: str) -> QuerySet[Case]:
    cases = access.visible_cases(user)
    if name == "resolved":
        return cases.filter(status__in=CLOSED).order_by(F("resolved_at").desc(nulls_last=True), "-id")
    cases = cases.filter(status__in=ACTIVE_STATUSES)
    if name == "snoozed":  # the cases snoozed by responses.snooze, the soonest back first
        return cases.filter(snoozed=True).order_by(F("snoozed_until").asc(nulls_last=True), "id")
    return inbox_order(cases.filter(_scope(user, name), snoozed=False))


def inbox_order(cases: QuerySet[Case]) -> QuerySet[Case]:
    """What needs an agent now comes first: cases waiting on the customer sink to the bottom;
    then breached SLAs, near breach, the highest priority, the earliest SLA due, the longest
    wait. console.js keeps live inserts in this order from each row's data-sort (sort_key)."""
    return cases.annotate(customer_rank=_customer_rank(), sla_rank=_sla_rank()).order_by(
        "customer_rank", "sla_rank", "-priority", F("sla_due_at").asc(nulls_last=True),
        F("waiting_since").asc(nulls_last=True), "id")


def _customer_rank() -> Switch:
    return Switch(When(status=CaseStatus.PENDING, then=Value(1)), default=Value(0), output_field=IntegerField())


def _sla_rank() -> Switch:
    return Switch(When(sla_state=SlaState.BREACHED, then=Value(0)), When(sla_state=SlaState.NEAR, then=Value(1)),
                  default=Value(2), output_field=IntegerField())


SLA_RANK = {SlaState.BREACHED: 0, SlaState.NEAR: 1}
NEVER = 10**12  # sorts after any epoch second, like NULLS LAST


def sort_key(case: Case) -> str:
    """inbox_order as numbers, for console.js to place a live row among the others."""
    def stamp(value) -> int:
        return int(value.timestamp()) if value else NEVER
    return ",".join(str(part) for part in (
        int(case.status == CaseStatus.PENDING), SLA_RANK.get(case.sla_state, 2), -round(case.priority, 6),
        stamp(case.sla_due_at), stamp(case.waiting_since), case.pk))


def intent_names() -> dict[str, str]:
    return dict(Intent.objects.values_list("slug", "name"))


def name_chips(found: dict, lane: str, names: dict[str, str]) -> dict:
    """The chips as agents read them: the intent's name, not its slug; no intent chip that only
    repeats the lane (intent spam beside lane Spam). Scores stay for the "why" disclosure."""
    intent = found.get("intent") or {}
    slug = intent.get("label", "")
    if slug:
        intent["name"] = names.get(slug) or slug.replace("_", " ").capitalize()
        intent["repeats_lane"] = slug == lane or (slug == "spam" and lane == Lane.NOISE)
    return found


def with_rows(cases) -> list[Case]:
    """Attach the chips of each case's last message: one query for the whole page."""
    cases = list(cases)
    message_ids = [c.last_message_id for c in cases if c.last_message_id]
    current = {c.message_id: c for c in Classification.objects.filter(message_id__in=message_ids, is_current=True)}
    names = intent_names() if current else {}
    for case in cases:
        case.chips = name_chips(chips(current.get(case.last_message_id)), case.lane, names)
        # The last message's reason explains the case's lane only when it decided that lane.
        case.lane_reason = case.chips.get("lane_reason", "") if case.chips.get("lane") == case.lane else ""
        case.sort_key = sort_key(case)
    proactive_reasons(cases)
    return cases


def proactive_reasons(cases: list[Case]) -> None:
    """Why each proactive case of the page is in the inbox, in words, on `case.proactive_reason`:
    the rule that opened it and what fired it ("Rule “Device in trouble”: 10 × Device error within
    1 hour"), or who wrote first ("Proactive WhatsApp message sent by Ana Agent"). Two queries for
    the whole page, and none when it holds no proactive case."""
    wanted = [c.pk for c in cases if PROACTIVE_TAG in (c.tags or [])]
    for case in cases:
        case.proactive_reason = ""
    if not wanted:
        return
    fired: dict[int, str] = {}
    firings = SignalRuleFiring.objects.filter(case_id__in=wanted).order_by("case_id", "-fired_at", "-id")
    for case_id, rule, reason in firings.values_list("case_id", "rule__name", "reason"):
        fired.setdefault(case_id, f"Rule “{rule}”: {reason}")
    sent: dict[int, str] = {}
    for row in (ProactiveMessage.objects.filter(case_id__in=wanted).order_by("case_id", "-created_at", "-id")
                .values("case_id", "channel", "template_name", "rule__name", "sent_by__first_name",
                        "sent_by__last_name", "sent_by__username")):
        if row["case_id"] in sent:
            continue
        who = (f"{row['sent_by__first_name']} {row['sent_by__last_name']}".strip() or row["sent_by__username"]
               or (f"the rule “{row['rule__name']}”" if row["rule__name"] else "a rule"))
        what = f"template “{row['template_name']}”" if row["template_name"] else "message"
        sent[row["case_id"]] = f"Proactive {presentation(row['channel']).label} {what} sent by {who}"
    for case in cases:
        if case.pk in fired and case.pk in sent:
            case.proactive_reason = f"{fired[case.pk]}; {sent[case.pk][0].lower()}{sent[case.pk][1:]}"
        else:
            case.proactive_reason = fired.get(case.pk) or sent.get(case.pk, "")


def row_queryset(cases: QuerySet[Case]) -> QuerySet[Case]:
    return cases.select_related("conversation__contact", "queue", "assignee", "last_message")


def counts_for(user) -> dict:
    """The sidebar's and the heading's counts, from the same scopes as the views they count."""
    visible = access.visible_cases(user)
    active = visible.filter(status__in=ACTIVE_STATUSES, snoozed=False)
    snoozed = visible.filter(status__in=ACTIVE_STATUSES, snoozed=True).count()
    totals = active.aggregate(active=Count("id"), **{name: Count("id", filter=_scope(user, name))
                                                     for name in ("mine", "unassigned", "held")})
    queues = {str(row["queue_id"]): row["n"] for row in
              active.filter(queue__isnull=False).values("queue_id").annotate(n=Count("id")).order_by()}
    return {**totals, "snoozed": snoozed, "resolved": visible.filter(status__in=CLOSED).count(), "queues": queues,
            "noise": noise.set_aside(user).count()}


@console_view("GET")
def home(request: HttpRequest) -> HttpResponse:
    """/console/: each role lands where its work is. Brand managers read the dashboards, admins
    run the sources, agents and supervisors work their queue (the inbox, rendered here). A
    filtered inbox (?queue=...) is the inbox for everyone."""
    if not request.GET:
        role = access.role_of(request.user)
        if role == Role.BRAND_MANAGER:
            return redirect("console:insight")
        if role == Role.ADMIN:
            return redirect("console:connectors")
    return inbox(request)


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
        # The heading's count follows the sidebar's live counts (console.js), so they never disagree.
        "count_attr": "data-count-queue" if current.isdigit() else "data-count",
        "count_key": current if current.isdigit() else (current or "active"),
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
    # A case waiting on the customer has nothing for an agent to do: `n` never opens one.
    ids = list(filtered_cases(request.user, "").exclude(status=CaseStatus.PENDING)
               .values_list("id", flat=True)[:2000])
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
