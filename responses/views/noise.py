"""The spam the router set aside, for the agents of its teams, and "not spam: open a case"."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from cxm.exceptions import CXMError
from learning.models import Lane
from responses import noise
from responses.summaries import case_summary
from responses.views.base import body, console_context, console_view, object_id, text, wants_json
from responses.views.inbox import channel_icon

PAGE_SIZE = 50


@console_view("GET")
def noise_list(request: HttpRequest) -> HttpResponse:
    rows = noise.set_aside(request.user).select_related("message__author", "message__connector")
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    items = [{"classification": c, "message": c.message, "icon": channel_icon(c.message.channel),
              "reason": str((c.priority_factors or {}).get("lane_reason", "")),
              "not_scored": "not_scored" in (c.flags or [])} for c in page.object_list]
    context = {
        **console_context(request),
        "page": page,
        "items": items,
        "open_lanes": [(lane, Lane(lane).label) for lane in noise.OPEN_LANES],
    }
    return render(request, "console/noise.html", context)


@console_view("POST")
def open_case(request: HttpRequest, message_id: str) -> HttpResponse:
    """Open the message's conversation as a case in the chosen lane (default: issue). A plain form
    lands on the case; a refusal is a page with the reason (and the case's link when one is
    already open), or the JSON reason for fetch."""
    pk = object_id(message_id, "message")
    data = body(request)
    try:
        lane = text(data, "lane", required=False, max_chars=20) or Lane.ISSUE
        reason = text(data, "reason", required=False, max_chars=noise.MAX_REASON_CHARS)
        case = noise.open_case_for_message(request.user, pk, lane, reason)
    except CXMError as exc:
        if wants_json(request):
            raise
        # A person pressed a button: a page that says why, not a JSON body.
        return render(request, "console/noise_refused.html",
                      {**console_context(request), "reason": exc.reason, "case_id": getattr(exc, "case_id", None)},
                      status=exc.status_code)
    url = reverse("console:case", kwargs={"case_id": case.pk})
    if wants_json(request):
        return JsonResponse({"ok": True, "case": case_summary(case), "url": url})
    return redirect(url)  # the case is in one of the user's teams (responses.noise picks it so)
