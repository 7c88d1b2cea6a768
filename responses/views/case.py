"""The conversation view and what an agent does in it: reply, note, correct, status, assign,
tags, canned responses, retry a failed reply."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from learning.models import Classification, Intent, Lane, Sentiment
from listening.models import Conversation, Direction, Message
from responses import access, assignment, cases as case_actions, merge, replies
from responses.exceptions import CaseNotFound, InvalidRequest
from responses.models import CannedResponse, Case, CaseActivity, CaseStatus, Note, Reply
from responses.summaries import case_summary, chips, note_dict, reply_dict
from responses.views.base import body, console_context, console_view, done, flag, object_id, text
from responses.views.case_actions import actions_context
from responses.views.inbox import intent_names, name_chips

THREAD_LIMIT = 500
SPARK_POINTS = 20
SPARK_W, SPARK_H = 160, 36


def _case_url(case_id: int) -> str:
    return reverse("console:case", kwargs={"case_id": case_id})


@console_view("GET")
def case_page(request: HttpRequest, case_id: str) -> HttpResponse:
    user = request.user
    case = access.get_case(user, object_id(case_id))
    case = (Case.objects.select_related("conversation__contact__customer", "conversation__connector", "team",
                                        "queue", "assignee").get(pk=case.pk))
    teams = access.team_ids(user)
    timeline, topics = _timeline(case)
    members = list(case.team.members.filter(is_active=True).select_related("cxm_profile")
                   .order_by("first_name", "username"))
    context = {
        **console_context(request),
        "case": case,
        "timeline": timeline,
        "topics": topics,
        "statuses": CaseStatus.choices,
        "sentiments": Sentiment.values,
        "lanes": Lane.choices,
        "intents": list(Intent.objects.filter(enabled=True).order_by("name").values_list("slug", "name")),
        "assignable": [m for m in members if getattr(getattr(m, "cxm_profile", None), "role", "")
                       in assignment.ASSIGNABLE_ROLES],
        "mentionable": [{"id": m.pk, "username": m.get_username(), "name": m.get_full_name() or m.get_username()}
                        for m in members],
        "idempotency_key": uuid.uuid4().hex,
        "rules": replies.channel_rules(case),
        "now": timezone.now(),
        **actions_context(user, case),
        **_customer(case, teams),
    }
    return render(request, "console/case.html", context)


def _timeline(case: Case) -> tuple[list[dict], list[str]]:
    """Messages, replies not yet delivered and notes, in time order; and the topics matched."""
    # A case shows the conversations merged into it too (responses.merge).
    threads = merge.conversation_ids(case)
    messages = list(Message.objects.filter(conversation_id__in=threads)
                    .select_related("author").prefetch_related("attachments")
                    .order_by("-sent_at", "-id")[:THREAD_LIMIT])
    messages.reverse()
    inbound = [m.pk for m in messages if m.direction == Direction.INBOUND]
    current = {c.message_id: c for c in Classification.objects.filter(message_id__in=inbound, is_current=True)}
    all_replies = list(Reply.objects.filter(case_id__in=merge.case_ids(case)).select_related("author"))
    by_message = {r.message_id: r for r in all_replies if r.message_id}
    items: list[dict] = []
    topics: set[str] = set()
    names = intent_names() if current else {}
    for message in messages:
        classification = current.get(message.pk)
        message_chips = name_chips(chips(classification), classification.lane if classification else "", names)
        topics.update(t for t in message_chips.get("topics", []) if t)
        items.append({"kind": "message", "at": message.sent_at, "message": message, "chips": message_chips,
                      "classification": classification, "reply": by_message.get(message.pk)})
    for reply in all_replies:
        if reply.message_id is None:
            items.append({"kind": "reply", "at": reply.created_at, "reply": reply})
    notes = Note.objects.filter(case_id__in=merge.case_ids(case))
    for note in notes.select_related("author").prefetch_related("mentions"):
        items.append({"kind": "note", "at": note.created_at, "note": note})
    for activity in CaseActivity.objects.filter(case=case).select_related("by"):  # snoozes, macros, merges
        items.append({"kind": "activity", "at": activity.created_at, "activity": activity})
    items.sort(key=lambda item: item["at"])
    return items, sorted(topics)


def _customer(case: Case, teams: set[int]) -> dict:
    """The customer's profile, their other conversations the user may see, and a sentiment line."""
    contact = case.conversation.contact
    customer = contact.customer if contact else None
    contacts = list(customer.contacts.all()) if customer else ([contact] if contact else [])
    visible = Q(case__team_id__in=teams) | Q(connector__teams__in=teams)
    others = list(Conversation.objects.filter(visible, contact__in=contacts).exclude(pk=case.conversation_id)
                  .select_related("case", "contact").distinct().order_by("-last_message_at")[:20])
    shown_contacts = {c.pk for c in ([contact] if contact else [])} | {c.contact_id for c in others}
    rows = list(Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__author__in=contacts,
        message__conversation_id__in=[case.conversation_id, *[c.pk for c in others]],
    ).order_by("-message__sent_at")[:SPARK_POINTS])
    rows.reverse()
    values = [_sentiment_value(r) for r in rows]
    return {
        "contact": contact,
        "customer": customer,
        "contacts": [c for c in contacts if c.pk in shown_contacts],
        "other_conversations": [{"conversation": c, "case": getattr(c, "case", None)} for c in others],
        "spark": _sparkline(values),
        "spark_last": values[-1] if values else None,
    }


def _sentiment_value(row: Classification) -> float:
    """negative = -1, neutral = 0, positive = +1, weighted by probability."""
    scores = row.sentiment_scores or {}
    if any(isinstance(scores.get(k), int | float) for k in ("positive", "negative")):
        return float(scores.get("positive", 0) or 0) - float(scores.get("negative", 0) or 0)
    return {"positive": 1.0, "negative": -1.0}.get(row.sentiment, 0.0)


def _sparkline(values: list[float]) -> dict | None:
    if not values:
        return None
    step = SPARK_W / max(1, len(values) - 1)
    mid = SPARK_H / 2
    points = [(round(i * step, 1), round(mid - max(-1.0, min(1.0, v)) * (mid - 3), 1)) for i, v in enumerate(values)]
    if len(points) == 1:
        points.append((SPARK_W, points[0][1]))
    return {"points": " ".join(f"{x},{y}" for x, y in points), "w": SPARK_W, "h": SPARK_H, "mid": mid,
            "last_x": points[-1][0], "last_y": points[-1][1], "count": len(values)}


# --- Actions ---------------------------------------------------------------------------------
@console_view("POST")
def case_status(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    status = text(body(request), "status", max_chars=20)
    case = case_actions.set_status(request.user, case.pk, status)
    return done(request, {"case": case_summary(case)}, _case_url(case.pk))


@console_view("POST")
def case_assign(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    value = body(request).get("assignee", "me")
    if value in ("me", None):
        assignee = request.user
    elif value in ("", "none"):
        assignee = None
    else:
        try:
            assignee = get_user_model().objects.filter(pk=object_id(value, "agent"), is_active=True).first()
        except CaseNotFound:
            assignee = None
        if assignee is None:
            raise InvalidRequest("no such agent")
    case = assignment.assign_case(case.pk, assignee, request.user)
    return done(request, {"case": case_summary(case)}, _case_url(case.pk))


@console_view("POST")
def case_tags(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    tags = body(request).get("tags", "")
    if not isinstance(tags, str | list):
        raise InvalidRequest("tags must be text or a list")
    case = case_actions.set_tags(request.user, case.pk, tags)
    return done(request, {"case": case_summary(case)}, _case_url(case.pk))


@console_view("POST")
def case_reply(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    data = body(request)
    reply = replies.send_reply(request.user, case.pk, text(data, "text", required=False, max_chars=20_000),
                               idempotency_key=text(data, "idempotency_key", required=False, max_chars=200),
                               resolve=flag(data, "resolve"))
    return done(request, {"reply": reply_dict(reply)}, _case_url(case.pk))


@console_view("POST")
def case_note(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    note = case_actions.add_note(request.user, case.pk, text(body(request), "text", required=False, max_chars=20_000))
    return done(request, {"note": note_dict(note)}, _case_url(case.pk))


@console_view("POST")
def case_correct(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    data = body(request)
    message_id = data.get("message")
    if not isinstance(message_id, str | int) or isinstance(message_id, bool):
        raise InvalidRequest("message must be a message id")
    field, value = text(data, "field", max_chars=20), text(data, "value", max_chars=60)
    correction = case_actions.correct(request.user, case.pk, message_id, field, value)
    return done(request, {"correction": {"id": correction.pk, "message": correction.message_id,
                                         "field": correction.field, "value": correction.value}},
                _case_url(case.pk))


@console_view("GET")
def case_canned(request: HttpRequest, case_id: str) -> JsonResponse:
    case = access.get_case(request.user, object_id(case_id))
    case = Case.objects.select_related("conversation__contact").get(pk=case.pk)
    query = request.GET.get("q", "").strip().lower()[:100]
    items = []
    for canned in CannedResponse.objects.filter(Q(team_id=case.team_id) | Q(team__isnull=True)):
        if query and query not in canned.title.lower() and query not in canned.shortcut.lower():
            continue
        items.append({"id": canned.pk, "title": canned.title, "shortcut": canned.shortcut,
                      "text": replies.render_canned(canned.text, case, request.user)})
    return JsonResponse({"canned": items})


@console_view("POST")
def reply_retry(request: HttpRequest, reply_id: str) -> HttpResponse:
    reply_pk = object_id(reply_id, "reply")
    case_id = (Reply.objects.filter(pk=reply_pk, case__team_id__in=access.team_ids(request.user))
               .values_list("case_id", flat=True).first())
    if case_id is None:
        raise CaseNotFound("no such reply")
    reply = replies.retry_reply(request.user, reply_pk)
    return done(request, {"reply": reply_dict(reply)}, _case_url(case_id))
