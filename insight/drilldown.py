"""The drill-down: the messages behind a clicked chart point, newest first, a page at a time."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from insight.filters import Filters, InvalidFilter, check_channels, check_lanes, instant, parse_term
from learning.models import Classification, Sentiment
from listening.models import Direction
from responses.access import visible_cases

DRILL_PAGE = 50
_VALUE = re.compile(r"^[a-z0-9_-]{1,60}$")


# --- Drill-down ---------------------------------------------------------------------------------


def _point(f: Filters, params) -> tuple[Filters, dict, datetime, datetime]:
    """Narrow the filters to a clicked point: its bucket and its value."""
    start_at, end_at = f.start_at, f.end_at
    raw_bucket = (params.get("bucket") or "").strip()
    if raw_bucket:
        bucket = instant(raw_bucket, "bucket")
        size = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}[f.granularity]
        start_at, end_at = max(start_at, bucket), min(end_at, bucket + size)
    where = {}
    for name in ("sentiment", "intent", "emotion"):
        value = (params.get(name) or "").strip()
        if value:
            if not _VALUE.match(value) or (name == "sentiment" and value not in Sentiment.values):
                raise InvalidFilter(f"not a valid {name}: {value[:40]!r}")
            where[name] = value
    narrowed = {k: [params.get(k)] for k in ("lane", "channel") if params.get(k)}
    term = parse_term(params.get("term")) if params.get("term") else f.term
    check_lanes(narrowed.get("lane", []))
    check_channels(narrowed.get("channel", []))
    f = replace(f, term=term, lanes=tuple(narrowed.get("lane", f.lanes)),
                channels=tuple(narrowed.get("channel", f.channels)))
    return f, where, start_at, end_at


def _cursor(raw: str):
    try:
        moment, pk = raw.rsplit("|", 1)
        if not pk.isascii() or not pk.isdigit() or len(pk) > 18:
            raise ValueError(pk)
        return instant(moment, "before"), int(pk)
    except (ValueError, InvalidFilter):
        raise InvalidFilter("'before' is not a cursor this page gave") from None


def drilldown(f: Filters, params, user=None) -> dict:
    """The messages behind a clicked point, newest first, a page at a time."""
    f, where, start_at, end_at = _point(f, params)
    rows = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__connector_id__in=f.connector_ids, message__sent_at__gte=start_at, message__sent_at__lt=end_at,
        **where,
    )
    for name, values in (("channel", f.channels), ("lane", f.lanes), ("language", f.languages)):
        if values:
            key = "message__channel__in" if name == "channel" else f"{name}__in"
            rows = rows.filter(**{key: values})
    if f.term:
        if connection.vendor == "postgresql":
            rows = rows.filter(topics__contains=[{"term_id": f.term}])
        else:  # SQLite has no JSON containment; the topics writer always puts term_id first
            rows = rows.filter(topics__contains=f'"term_id": {f.term},')
    before = (params.get("before") or "").strip()
    if before:
        moment, pk = _cursor(before)
        rows = rows.filter(Q(message__sent_at__lt=moment) | Q(message__sent_at=moment, message_id__lt=pk))
    page = list(rows.select_related("message", "message__author", "message__connector")
                .order_by("-message__sent_at", "-message_id")[:DRILL_PAGE + 1])
    more = len(page) > DRILL_PAGE
    page = page[:DRILL_PAGE]
    cases = _visible_cases(user, [c.message.conversation_id for c in page])
    messages = [{
        "id": c.message_id, "sent_at": c.message.sent_at.isoformat(), "channel": c.message.channel,
        "connector": c.message.connector.name,
        "author": (c.message.author.display_name or c.message.author.handle) if c.message.author else "",
        "text": c.message.text, "sentiment": c.sentiment, "intent": c.intent, "emotion": c.emotion, "lane": c.lane,
        "language": c.language, "conversation_id": c.message.conversation_id,
        "case_id": cases.get(c.message.conversation_id),
        # For display: "not scored" instead of a sentiment, and the lane's reason behind a "why".
        "not_scored": "not_scored" in (c.flags or []),
        "lane_reason": str((c.priority_factors or {}).get("lane_reason", "")),
    } for c in page]
    last = page[-1] if page else None
    return {"messages": messages,
            "next": f"{last.message.sent_at.isoformat()}|{last.message_id}" if more and last else None}


def _visible_cases(user, conversation_ids) -> dict[int, int]:
    if user is None or not conversation_ids:
        return {}

    return dict(visible_cases(user).filter(conversation_id__in=conversation_ids)
                .values_list("conversation_id", "id"))
