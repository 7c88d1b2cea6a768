"""Segment sentiment: each saved segment's net sentiment (positive minus negative, in % of its
scored messages) next to everyone's, over the messages the filters select. A segment is read as
it stands now (responses.segments): "premium customers with 3+ device errors this week" compares
how those customers feel with how all customers feel in the period."""

from __future__ import annotations

from django.db.models import Count

from insight.filters import SENTIMENTS, Filters
from insight.panels.registry import Panel, register
from learning.models import Classification
from listening.models import Direction, Segment
from responses import segments

MAX_SEGMENTS = 12
EVERYONE = "everyone"


def _classified(f: Filters):
    rows = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__sent_at__gte=f.start_at, message__sent_at__lt=f.end_at, message__connector_id__in=f.connector_ids)
    if f.channels:
        rows = rows.filter(message__channel__in=f.channels)
    if f.lanes:
        rows = rows.filter(lane__in=f.lanes)
    if f.languages:
        rows = rows.filter(language__in=f.languages)
    if f.term:
        rows = rows.filter(topics__contains=[{"term_id": f.term}])
    return rows


def _row(key: str, label: str, rows) -> dict | None:
    counts = {s: 0 for s in SENTIMENTS}
    for value, n in rows.order_by().values_list("sentiment").annotate(n=Count("id")):
        if value in counts:
            counts[value] = n
    total = sum(counts.values())
    if not total:
        return None
    net = round(100.0 * (counts["positive"] - counts["negative"]) / total, 1)
    return {"key": key, "label": label, "count": total, "value": net, **counts}


def segment_sentiment(f: Filters) -> dict:
    classified = _classified(f)
    found = [_row(EVERYONE, "Everyone", classified)]
    for segment in Segment.objects.order_by("name")[:MAX_SEGMENTS]:
        members = segments.customers(segment.definition, now=f.now).values("pk")
        found.append(_row(str(segment.pk), segment.name, classified.filter(message__author__customer_id__in=members)))
    # Rows are segments, not channels: the "bars" renderer names its columns from these, draws
    # no "Slowest"/"Fastest" and opens no channel drill-down.
    return {"rows": [r for r in found if r], "unit": "%", "value_label": "Net sentiment (positive − negative)",
            "row_label": "Segment", "count_label": "messages", "kpis": False, "drill": False, "ignored": []}


def _csv(data: dict):
    return ["segment", "label", "messages", "negative", "neutral", "positive", "net_percent"], [
        [r["key"], r["label"], r["count"], r["negative"], r["neutral"], r["positive"], r["value"]]
        for r in data["rows"]]


register(Panel(
    name="segment_sentiment", title="Segments' sentiment",
    about="Net sentiment of each saved segment's messages in the period, next to everyone's",
    query=segment_sentiment, csv=_csv, renderer="bars", order=80,
))
