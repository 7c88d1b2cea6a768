"""Snooze, macros and merge on the case page: thin shells over responses.snooze, .macros and
.merge. Each answers JSON to fetch and redirects plain forms back to the case."""

from __future__ import annotations

import uuid

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from responses import access, macros, merge, snooze
from responses.models import Case, MergeRecord
from responses.summaries import case_summary, reply_dict
from responses.views.base import body, console_view, done, flag, object_id, text

MAX_CANDIDATES = 20


def actions_context(user, case: Case) -> dict:
    """What the case page's snooze, macro and merge controls show."""
    items = list(macros.visible(user).filter(Q(team_id=case.team_id) | Q(team__isnull=True)).order_by("title", "id"))
    for item in items:
        item.problems = macros.problems(item, case.team)
    contact = case.conversation.contact
    same = (Q(conversation__contact__customer_id=contact.customer_id) if contact and contact.customer_id
            else Q(conversation__contact_id=contact.pk) if contact else Q(pk__in=[]))
    merged_away = MergeRecord.objects.filter(undone_at__isnull=True).values("source_id")
    candidates = (access.visible_cases(user).filter(same).exclude(pk=case.pk).exclude(pk__in=merged_away)
                  .select_related("conversation").order_by("-opened_at")[:MAX_CANDIDATES])
    return {
        "macros": items,
        "macro_key": uuid.uuid4().hex,
        "snooze_presets": snooze.PRESETS,
        "merged_into": merge.live_merge_of(case),
        "merged_in": list(MergeRecord.objects.filter(target=case, undone_at__isnull=True)
                          .select_related("source__conversation")),
        "merge_candidates": list(candidates),
    }


def _case_url(case_id: int) -> str:
    return reverse("console:case", kwargs={"case_id": case_id})


@console_view("POST")
def case_snooze(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    data = body(request)
    zone = snooze.zone_for(text(data, "tz", required=False, max_chars=64))
    until = snooze.until_for(text(data, "preset", max_chars=20), at=text(data, "until", required=False, max_chars=40),
                             zone=zone)
    case = snooze.snooze_case(request.user, case.pk, until, zone=zone)
    return done(request, {"case": case_summary(case)}, reverse("console:inbox"))


@console_view("POST")
def case_unsnooze(request: HttpRequest, case_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    case = snooze.unsnooze_case(request.user, case.pk)
    return done(request, {"case": case_summary(case)}, _case_url(case.pk))


@console_view("POST")
def case_macro(request: HttpRequest, case_id: str, macro_id: str) -> HttpResponse:
    case = access.get_case(request.user, object_id(case_id))
    data = body(request)
    applied = macros.apply_macro(request.user, case.pk, object_id(macro_id, "macro"),
                                 idempotency_key=text(data, "idempotency_key", required=False, max_chars=200))
    return done(request, {"case": case_summary(applied.case), "already": applied.already,
                          "reply": reply_dict(applied.reply) if applied.reply else None}, _case_url(case.pk))


@console_view("POST")
def case_merge(request: HttpRequest, case_id: str) -> HttpResponse:
    """Merge the case named in the body ("source": a case id, "#12" is fine) into this one."""
    case = access.get_case(request.user, object_id(case_id))
    data = body(request)
    source = data.get("source")
    if isinstance(source, str):
        source = source.strip().lstrip("#")
    record = merge.merge_cases(request.user, case.pk, object_id(source, "case to merge"),
                               same_person=flag(data, "same_person"))
    return done(request, {"merge": _merge_dict(record)}, _case_url(case.pk))


@console_view("POST")
def merge_undo(request: HttpRequest, merge_id: str) -> HttpResponse:
    record = merge.undo_merge(request.user, object_id(merge_id, "merge"))
    return done(request, {"merge": _merge_dict(record)}, _case_url(record.target_id))


def _merge_dict(record: MergeRecord) -> dict:
    return {"id": record.pk, "target": record.target_id, "source": record.source_id,
            "customers_merged": bool(record.customers), "undone": record.undone_at is not None,
            "undo_url": reverse("console:merge-undo", kwargs={"merge_id": record.pk})}
