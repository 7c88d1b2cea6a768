"""Message panels: sentiment, volume, intents, emotions and topics. They read `Rollup` rows
(learning.rollups keeps them in the classifying transaction), never the messages."""

from __future__ import annotations

from collections import Counter

from django.db import connection
from django.db.models import Sum

from insight.filters import SENTIMENTS, Filters, bucket_index, buckets
from insight.panels.care import _side_by_side
from insight.panels.registry import Panel, register
from learning import rollups
from learning.models import Intent, Rollup, Term

TOP_TERMS = 20
RISING_MIN_MENTIONS = 5


# --- Message panels (rollups) ------------------------------------------------------------------


SPANS, WEEKS = "spans", "weeks"  # `_rows` grains: the fewest rows, or no month (a weekly series)
_GROUPABLE = frozenset({"bucket", "value", "channel", "lane", "language", "term_id", "connector_id"})


def _rows(f: Filters, dim: str, *group: str, grain: str = SPANS, terms: str = "one") -> list[dict]:
    """Summed rollup counts for the filters, grouped by `group` (dicts of the group's fields and
    `n`). `grain`: HOUR or DAY rows, or SPANS (sentiment: whole months, weeks and days, the fewest
    rows; a total, no bucket) or WEEKS (whole weeks and days: a weekly series). `terms`: "one"
    counts every message (or those of the chosen term), "each" the rows of every term.

    One statement: a UNION ALL of one branch per span, each an index range on the rollup key
    (whose index carries the count: index-only), summed outside. OR-ing the spans in one WHERE
    makes PostgreSQL combine bitmaps and read the table instead."""
    assert _GROUPABLE.issuperset(group)
    if grain in (SPANS, WEEKS) and dim not in rollups.DIMS_BY_GRAIN[rollups.MONTH]:
        grain = rollups.DAY  # intents and emotions are kept per day only
    if grain == SPANS:
        spans = rollups.spans(f.start, f.end)
    elif grain == WEEKS:
        spans = rollups.spans(f.start, f.end, months=False)
    elif grain == rollups.HOUR:
        spans = [(grain, rollups.hour_bucket(f.start_at), f.end_at)]
    else:
        spans = [(grain, f.start_at, f.end_at)]
    # A list, not "term_id <> 0": PostgreSQL then probes the index once per term, each a range
    # of buckets, instead of reading every term row of all time.
    term_ids = ([f.term] if f.term else list(Term.objects.values_list("id", flat=True))) if terms == "each" else None
    if connection.vendor != "postgresql":
        return _rows_per_span(f, dim, group, spans, term_ids)
    where, params = ["dim = %s", "connector_id = ANY(%s)"], [dim, list(f.connector_ids)]
    if term_ids is not None:
        where.append("term_id = ANY(%s)")
        params.append(term_ids)
    else:
        where.append("term_id = %s")
        params.append(f.term or rollups.ALL_TERMS)
    for name, values in (("channel", f.channels), ("lane", f.lanes), ("language", f.languages)):
        if values:
            where.append(f"{name} = ANY(%s)")
            params.append(list(values))
    columns = ", ".join(group)
    select = (f"SELECT {columns}{', ' if group else ''}count FROM {Rollup._meta.db_table} WHERE "  # noqa: S608
              + " AND ".join([*where, "grain = %s", "bucket >= %s", "bucket < %s"]))
    branches, all_params = [], []
    for span_grain, since, until in spans:
        branches.append(select)
        all_params += [*params, span_grain, since, until]
    if not branches:
        return []
    # Re-classification can leave rows at 0: a group summing to 0 is no group at all.
    sql = (f"SELECT {columns}{', ' if group else ''}sum(count) FROM ({' UNION ALL '.join(branches)}) AS r"  # noqa: S608
           f"{' GROUP BY ' + columns if group else ''} HAVING sum(count) > 0")
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        return [{**dict(zip(group, row[:-1], strict=True)), "n": row[-1]} for row in cursor.fetchall()]


def _rows_per_span(f: Filters, dim: str, group: tuple, spans: list, term_ids: list | None) -> list[dict]:
    """`_rows` through the ORM, one query per span, summed here (SQLite: no ANY, no typed rows
    from a raw cursor)."""
    sums: Counter = Counter()
    for grain, since, until in spans:
        rows = Rollup.objects.filter(grain=grain, dim=dim, bucket__gte=since, bucket__lt=until,
                                     connector_id__in=f.connector_ids)
        rows = rows.filter(term_id__in=term_ids) if term_ids is not None else rows.filter(
            term_id=f.term or rollups.ALL_TERMS)
        for name, values in (("channel", f.channels), ("lane", f.lanes), ("language", f.languages)):
            if values:
                rows = rows.filter(**{f"{name}__in": values})
        for row in rows.values(*group).annotate(n=Sum("count")).order_by():
            sums[tuple(row[g] for g in group)] += row["n"]
    return [{**dict(zip(group, key, strict=True)), "n": n} for key, n in sums.items() if n > 0]


def _grain(f: Filters) -> str:
    """The rows a series reads: hours, days, or (weekly) whole weeks and the days around them."""
    return {"hour": rollups.HOUR, "week": WEEKS}.get(f.granularity, rollups.DAY)


def _net(counts: dict) -> float | None:
    total = sum(counts.get(s, 0) for s in SENTIMENTS)
    return round(100.0 * (counts.get("positive", 0) - counts.get("negative", 0)) / total, 1) if total else None


def _sentiment_totals(f: Filters) -> dict:
    counts = {s: 0 for s in SENTIMENTS}
    not_scored = 0
    for row in _rows(f, "sentiment", "value"):
        if row["value"] in counts:
            counts[row["value"]] += row["n"]
        elif row["value"] == "":
            not_scored += row["n"]
    return {**counts, "total": sum(counts.values()), "net": _net(counts), "not_scored": not_scored}


def _series_and_previous(f: Filters, *group: str, previous) -> tuple[list[dict], dict | None]:
    """The series' rows and the previous period's totals: two reads, side by side (care's
    _side_by_side: each on its own connection), so the panel waits for the slower, not both."""
    calls = {"series": (lambda g: _rows(g, "sentiment", "bucket", *group, grain=_grain(g)), f)}
    if f.compare:
        calls["previous"] = (previous, f.previous())
    done = _side_by_side(calls)
    return done["series"], done.get("previous")


def sentiment(f: Filters) -> dict:
    starts, labels = buckets(f)
    index = bucket_index(f, starts)
    series = {s: [0] * len(starts) for s in SENTIMENTS}
    not_scored = [0] * len(starts)  # sentiment "": a language the models do not read
    rows, previous = _series_and_previous(f, "value", previous=_sentiment_totals)
    for row in rows:
        i = index(row["bucket"])
        if i is not None and row["value"] in series:
            series[row["value"]][i] += row["n"]
        elif i is not None and row["value"] == "":
            not_scored[i] += row["n"]
    net = [_net({s: series[s][i] for s in SENTIMENTS}) for i in range(len(starts))]
    totals = {s: sum(series[s]) for s in SENTIMENTS}
    # Shares and the net score are of the scored messages; the others are counted, not guessed.
    totals = {**totals, "total": sum(totals.values()), "net": _net(totals), "not_scored": sum(not_scored)}
    return {"buckets": labels, "bucket_starts": [s.isoformat() for s in starts], "series": series, "net": net,
            "not_scored": not_scored, "totals": totals, "previous": previous, "ignored": []}


def _volume_totals(f: Filters) -> dict:
    by_channel, by_lane = {}, {}
    for row in _rows(f, "sentiment", "channel", "lane"):
        by_channel[row["channel"]] = by_channel.get(row["channel"], 0) + row["n"]
        by_lane[row["lane"]] = by_lane.get(row["lane"], 0) + row["n"]
    return {"total": sum(by_channel.values()), "by_channel": by_channel, "by_lane": by_lane}


def volume(f: Filters) -> dict:
    starts, labels = buckets(f)
    index = bucket_index(f, starts)
    by_channel: dict[str, list[int]] = {}
    by_lane: dict[str, list[int]] = {}
    rows, previous = _series_and_previous(f, "channel", "lane", previous=_volume_totals)
    for row in rows:
        i = index(row["bucket"])
        if i is None:
            continue
        by_channel.setdefault(row["channel"], [0] * len(starts))[i] += row["n"]
        by_lane.setdefault(row["lane"], [0] * len(starts))[i] += row["n"]
    totals = {"total": sum(map(sum, by_channel.values())),
              "by_channel": {k: sum(v) for k, v in by_channel.items()},
              "by_lane": {k: sum(v) for k, v in by_lane.items()}}
    return {"buckets": labels, "bucket_starts": [s.isoformat() for s in starts], "by_channel": by_channel,
            "by_lane": by_lane, "totals": totals, "previous": previous, "ignored": []}


def _distribution(f: Filters, dim: str, labels: dict, leave_out: frozenset = frozenset()) -> dict:
    now = {row["value"]: row["n"] for row in _rows(f, dim, "value") if row["value"] not in leave_out}
    before = ({row["value"]: row["n"] for row in _rows(f.previous(), dim, "value") if row["value"] not in leave_out}
              if f.compare else {})
    return distribution_items(now, before, labels, leave_out, compare=f.compare)


def distribution_items(now: dict, before: dict, labels: dict, leave_out: frozenset, *, compare: bool) -> dict:
    """Counts now and in the previous period -> the panel's shares and changes (shared with the raw
    reference in bench/insight_raw.py, which counts its own way and must shape alike)."""
    total, previous_total = sum(now.values()), sum(before.values())
    items = []
    for value in sorted(set(now) | set(before), key=lambda v: (-now.get(v, 0), v)):
        share = now.get(value, 0) / total if total else 0.0
        previous_share = before.get(value, 0) / previous_total if previous_total else None
        items.append({
            "value": value, "label": labels.get(value) or value.replace("_", " ").capitalize() or "(none)",
            "count": now.get(value, 0), "share": round(share, 4),
            "previous_count": before.get(value, 0) if compare else None,
            "previous_share": round(previous_share, 4) if previous_share is not None else None,
            "change": round(share - previous_share, 4) if previous_share is not None else None,
        })
    return {"items": items, "total": total, "previous_total": previous_total if compare else None, "ignored": [],
            "left_out": sorted(labels.get(v, v) for v in leave_out)}


def intents(f: Filters) -> dict:
    """Intents' shares of the messages. Facts about the conversation (a follow-up) are not what the
    customer wants, and are left out (Intent.counts_on_dashboards)."""
    names = dict(Intent.objects.values_list("slug", "name"))
    facts = frozenset(Intent.objects.filter(counts_on_dashboards=False).values_list("slug", flat=True))
    return _distribution(f, "intent", names, facts)


def emotions(f: Filters) -> dict:
    return _distribution(f, "emotion", {})


def growth(now: int, before: int) -> dict:
    """A change as a share of what it was: against nothing there is no share, the term is "new"
    (47 mentions against 0 is not "+4600%")."""
    if not before:
        return {"growth": None, "new": True}
    return {"growth": round((now - before) / before, 3), "new": False}


def rising_order(t: dict) -> tuple:
    """New terms first (they rose from nothing), then by growth, mentions and name."""
    return (not t["new"], -(t["growth"] or 0), -t["mentions"], t["name"])


def topics(f: Filters) -> dict:
    counts: dict[int, dict] = {}
    calls = {"now": (lambda g: _rows(g, "sentiment", "term_id", "value", terms="each"), f)}
    if f.compare:
        calls["before"] = (lambda g: _rows(g, "sentiment", "term_id", terms="each"), f.previous())
    done = _side_by_side(calls)  # the two periods side by side
    for row in done["now"]:
        counts.setdefault(row["term_id"], {s: 0 for s in SENTIMENTS})[row["value"]] = row["n"]
    before = {row["term_id"]: row["n"] for row in done.get("before", [])}
    known = {t.pk: t for t in Term.objects.filter(pk__in=set(counts) | set(before))}
    terms = []
    for term_id, by_sentiment in counts.items():
        if term_id not in known:
            continue  # a deleted term
        mentions = sum(by_sentiment.get(s, 0) for s in SENTIMENTS)
        terms.append({
            "term_id": term_id, "name": known[term_id].name, "kind": known[term_id].kind, "mentions": mentions,
            **{s: by_sentiment.get(s, 0) for s in SENTIMENTS}, "net": _net(by_sentiment),
            "previous_mentions": before.get(term_id, 0) if f.compare else None,
            "change": mentions - before.get(term_id, 0) if f.compare else None,
        })
    terms.sort(key=lambda t: (-t["mentions"], t["name"]))
    voices = [t for t in terms if t["kind"] in (Term.Kind.BRAND, Term.Kind.COMPETITOR)]
    voice_total = sum(t["mentions"] for t in voices)
    rising = [
        {"term_id": t["term_id"], "name": t["name"], "kind": t["kind"], "mentions": t["mentions"],
         "previous_mentions": t["previous_mentions"], **growth(t["mentions"], t["previous_mentions"])}
        for t in terms if f.compare and t["mentions"] >= RISING_MIN_MENTIONS and t["mentions"] > t["previous_mentions"]
    ]
    rising.sort(key=rising_order)
    return {
        "terms": terms[:TOP_TERMS],
        "share_of_voice": [{"term_id": t["term_id"], "name": t["name"], "kind": t["kind"], "mentions": t["mentions"],
                            "share": round(t["mentions"] / voice_total, 4)} for t in voices if voice_total],
        "rising": rising[:10], "ignored": [],
    }


# --- CSV and declarations ---------------------------------------------------------------------


def _sentiment_rows(data: dict):
    # not_scored: messages in a language the sentiment models do not read, outside total and net.
    header = ["bucket_start", "bucket", "negative", "neutral", "positive", "total", "net", "not_scored"]
    series = data["series"]
    not_scored = data.get("not_scored") or [0] * len(data["buckets"])
    rows = []
    for i, (start, label) in enumerate(zip(data["bucket_starts"], data["buckets"], strict=True)):
        counts = [series[s][i] for s in ("negative", "neutral", "positive")]
        rows.append([start, label, *counts, sum(counts), data["net"][i], not_scored[i]])
    return header, rows


def _volume_rows(data: dict):
    header = ["bucket_start", "bucket", "dimension", "value", "messages"]
    rows = []
    for dimension in ("channel", "lane"):
        for value, counts in sorted(data[f"by_{dimension}"].items()):
            for start, label, n in zip(data["bucket_starts"], data["buckets"], counts, strict=True):
                rows.append([start, label, dimension, value or "(none)", n])
    return header, rows


def _distribution_rows(data: dict):
    fields = ["value", "label", "count", "share", "previous_count", "previous_share", "change"]
    return fields, [[item.get(f) for f in fields[:-1]] + [change_cell(item)] for item in data["items"]]


def change_cell(item: dict):
    """The change column: "new" where the previous period had no messages at all to compare with."""
    if item.get("change") is None and item.get("previous_count") == 0 and item.get("count"):
        return "new"
    return item.get("change")


def _topics_rows(data: dict):
    header = ["table", "term_id", "name", "kind", "mentions", "negative", "neutral", "positive", "net",
              "previous_mentions", "change", "share", "growth"]
    rows = []
    for table in ("terms", "share_of_voice", "rising"):
        for item in data[table]:
            rows.append([table, *(item.get(f) for f in header[1:-1]), "new" if item.get("new") else item.get("growth")])
    return header, rows


register(Panel(
    name="sentiment", title="Sentiment over time",
    about="Share of negative, neutral and positive messages, and the net score",
    query=sentiment, csv=_sentiment_rows, renderer="sentiment", order=10,
))
register(Panel(
    name="volume", title="Volume",
    about="Messages by channel and by lane",
    query=volume, csv=_volume_rows, renderer="volume", order=20,
))
register(Panel(
    name="intents", title="Intents",
    about="What customers want, against the previous period",
    query=intents, csv=_distribution_rows, renderer="intents", order=30,
))
register(Panel(
    name="emotions", title="Emotions",
    about="How customers feel, against the previous period",
    query=emotions, csv=_distribution_rows, renderer="emotions", order=40,
))
register(Panel(
    name="topics", title="Topics",
    about="Top terms with their sentiment, share of voice and rising terms",
    query=topics, csv=_topics_rows, renderer="topics", order=60,
))
