"""Segment sentiment: each saved segment's net sentiment (positive minus negative, in % of its
scored messages) next to everyone's, over the messages the filters select. A segment is read as
it stands now (responses.segments): "premium customers with 3+ device errors this week" compares
how those customers feel with how all customers feel in the period.

Everyone's row is summed from the sentiment rollup (learning.rollups: the same messages, counted
when classified). A segment's row stays exact and follows its definition as it stands: its
members are asked now (one query), and only their contacts' messages in the range are read,
through the (author, sent_at) index, so a segment costs in proportion to its own messages, not to
everyone's. No per-segment counts are stored: a customer's tier or attributes can change at any
moment, and a stored membership would lag them."""

from __future__ import annotations

from django.db.models import Count

from insight.filters import SENTIMENTS, Filters
from insight.panels.care import _side_by_side
from insight.panels.messages import _rows as _rollup_rows
from insight.panels.registry import Panel, register
from learning.models import Classification
from listening.models import Contact, Direction, Segment
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


def _counted(rows) -> dict[str, int]:
    counts = {s: 0 for s in SENTIMENTS}
    for value, n in rows.order_by().values_list("sentiment").annotate(n=Count("id")):
        if value in counts:
            counts[value] = n
    return counts


def _everyone(f: Filters) -> dict[str, int]:
    """Everyone's counts from the rollup's daily sentiment rows (the filters' messages exactly)."""
    counts = {s: 0 for s in SENTIMENTS}
    for row in _rollup_rows(f, "sentiment", "value"):
        if row["value"] in counts:
            counts[row["value"]] += row["n"]
    return counts


def _row(key: str, label: str, counts: dict[str, int]) -> dict | None:
    total = sum(counts.values())
    if not total:
        return None
    net = round(100.0 * (counts["positive"] - counts["negative"]) / total, 1)
    return {"key": key, "label": label, "count": total, "value": net, **counts}


def segment_sentiment(f: Filters) -> dict:
    def members_counts(segment: Segment) -> dict[str, int]:
        members = segments.customers(segment.definition, now=f.now).values("pk")
        # From the members' contacts to their messages (message_author_sent_idx), not from every
        # classified message in the range to its author's customer.
        contacts = Contact.objects.filter(customer_id__in=members).values("pk")
        return _counted(_classified(f).filter(message__author_id__in=contacts))

    chosen = list(Segment.objects.order_by("name")[:MAX_SEGMENTS])
    # Every row on its own connection, side by side (care's _side_by_side).
    done = _side_by_side({EVERYONE: (_everyone, f), **{str(s.pk): (members_counts, s) for s in chosen}})
    found = [_row(EVERYONE, "Everyone", done[EVERYONE])]
    found += [_row(str(s.pk), s.name, done[str(s.pk)]) for s in chosen]
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
