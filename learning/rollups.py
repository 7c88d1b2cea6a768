"""Rollups: the dashboards' counts, kept current in the transaction that classifies.

`record(old, new)` runs inside `actions._store`, after the conversations of the batch are locked:
every classification that stops being current is subtracted from its rows and every new current
one is added, so a re-classification moves a message between rows and a retried batch never
counts it twice. `rebuild()` recomputes everything from the raw tables (after an upgrade, or as a
repair); `manage.py rebuild_rollups` runs it. On PostgreSQL it is set-based: a few INSERT ...
SELECT statements, no row read into Python (1M messages: see bench/README.md, dashboards). It
sends `rollups_rebuilt` inside its transaction, so the apps above (insight's care rollup) rebuild
theirs in the same one.

Buckets: hourly rows start at UTC hours; daily rows start at midnight in the reporting time zone
(`CXM_REPORT_TIME_ZONE`, default `TIME_ZONE`), stored as that instant in UTC.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Min
from django.dispatch import Signal

from learning.models import Classification, ConversationMood, Rollup
from listening.models import Conversation, Direction, Message

HOUR, DAY = "h", "d"
DIMS_BY_GRAIN = {HOUR: ("sentiment",), DAY: ("sentiment", "intent", "emotion")}
ALL_TERMS = 0
_KEY_FIELDS = ("grain", "dim", "term_id", "bucket", "connector_id", "channel", "lane", "language", "value")
_CHUNK = 500

# Sent by rebuild() inside its transaction, after the learning rollups are rebuilt (no arguments).
rollups_rebuilt = Signal()


def reporting_tz() -> ZoneInfo:
    return ZoneInfo(getattr(settings, "CXM_REPORT_TIME_ZONE", "") or settings.TIME_ZONE)


def hour_bucket(moment: datetime) -> datetime:
    utc = moment.astimezone(ZoneInfo("UTC"))
    return utc.replace(minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    """The instant (UTC) the reporting day begins."""
    return datetime.combine(day, time.min, tzinfo=reporting_tz()).astimezone(ZoneInfo("UTC"))


def local_day(moment: datetime) -> date:
    return moment.astimezone(reporting_tz()).date()


def term_ids(topics) -> list[int]:
    """The distinct term ids a classification's topics mention."""
    found = set()
    for topic in topics if isinstance(topics, list) else []:
        term_id = topic.get("term_id") if isinstance(topic, dict) else None
        if isinstance(term_id, int) and term_id > 0:
            found.add(term_id)
    return sorted(found)


def keys(sent_at, connector_id, channel, lane, language, sentiment, intent, emotion, topics) -> list[tuple]:
    """Every rollup row one classified message counts in."""
    values = {"sentiment": sentiment, "intent": intent, "emotion": emotion}
    buckets = {HOUR: hour_bucket(sent_at), DAY: day_start(local_day(sent_at))}
    out = []
    for term in (ALL_TERMS, *term_ids(topics)):
        for grain, dims in DIMS_BY_GRAIN.items():
            for dim in dims:
                out.append((grain, dim, term, buckets[grain], connector_id, channel, lane or "",
                            language or "", values[dim] or ""))
    return out


_FIELDS = ("message__sent_at", "message__connector_id", "message__channel", "lane", "language",
           "sentiment", "intent", "emotion", "topics")


def _counted(classifications) -> Counter:
    totals: Counter = Counter()
    for row in classifications.values_list(*_FIELDS):
        totals.update(keys(*row))
    return totals


def record(old_ids: list[int], created: list[Classification]) -> None:
    """Move the counts from the classifications `old_ids` (no longer current) to `created`, the
    rows just stored (read from memory, with their messages, rather than queried back)."""
    delta: Counter = Counter()
    for row in created:
        message = row.message
        if row.status == Classification.Status.OK and message.direction == Direction.INBOUND:
            delta.update(keys(message.sent_at, message.connector_id, message.channel, row.lane, row.language,
                              row.sentiment, row.intent, row.emotion, row.topics))
    if old_ids:
        ok = Classification.objects.filter(status=Classification.Status.OK, message__direction=Direction.INBOUND)
        delta.subtract(_counted(ok.filter(pk__in=old_ids)))
    apply({key: n for key, n in delta.items() if n})


def apply(delta: dict) -> None:
    """Add `delta` (key -> change) to the rollup rows, creating missing rows. Keys are written in
    sorted order so two workers touching the same rows never deadlock."""
    if not delta:
        return
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(*key[:3], adapt(key[3]), *key[4:], n) for key, n in sorted(delta.items())]
    table = Rollup._meta.db_table
    columns = ", ".join(_KEY_FIELDS) + ", count"
    one = "(" + ", ".join(["%s"] * (len(_KEY_FIELDS) + 1)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            # Identifiers are constants; every value is a parameter.
            sql = (f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(chunk))} "  # noqa: S608
                   f"ON CONFLICT ({', '.join(_KEY_FIELDS)}) DO UPDATE SET count = {table}.count + excluded.count")
            cursor.execute(sql, [value for row in chunk for value in row])


def refresh_moods(conversation_ids) -> None:
    """Recompute how each conversation began and stands: its first and latest inbound messages
    with a current classification."""
    conversation_ids = sorted(set(conversation_ids))
    if not conversation_ids:
        return
    current = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__conversation_id__in=conversation_ids,
    )
    spans = {
        row["message__conversation_id"]: row
        for row in current.values("message__conversation_id").annotate(
            first=Min("message__sent_at"), last=Max("message__sent_at"), n=Count("id"))
    }
    moments = {row[k] for row in spans.values() for k in ("first", "last")}
    found = {}
    for conv, sent_at, sentiment, language in current.filter(message__sent_at__in=moments).order_by(
        "message__sent_at", "message_id"
    ).values_list("message__conversation_id", "message__sent_at", "sentiment", "language"):
        found.setdefault((conv, sent_at), (sentiment, language))
    conversations = Conversation.objects.in_bulk(list(spans))
    moods = []
    for conv, span in spans.items():
        first, last = found.get((conv, span["first"])), found.get((conv, span["last"]))
        if first is None or last is None or conv not in conversations:
            continue
        conversation = conversations[conv]
        moods.append(ConversationMood(
            conversation_id=conv, connector_id=conversation.connector_id, channel=conversation.channel,
            language=first[1] or "", first_at=span["first"], first_sentiment=first[0] or "",
            last_at=span["last"], last_sentiment=last[0] or "", inbound_count=span["n"],
        ))
    ConversationMood.objects.filter(conversation_id__in=conversation_ids).exclude(
        conversation_id__in=[m.conversation_id for m in moods]).delete()
    ConversationMood.objects.bulk_create(
        moods, update_conflicts=True, unique_fields=["conversation"],
        update_fields=["connector_id", "channel", "language", "first_at", "first_sentiment", "last_at",
                       "last_sentiment", "inbound_count"],
    )


def lock_conversations(message_ids) -> list[int]:
    """Lock the conversations of these messages, in id order, for the rest of the transaction:
    two workers storing results for one conversation (or one message) take turns, so each reads
    the other's committed rows before it subtracts and recounts."""
    conversation_ids = sorted(set(
        Message.objects.filter(pk__in=list(message_ids)).values_list("conversation_id", flat=True)))
    list(Conversation.objects.select_for_update().filter(pk__in=conversation_ids).order_by("pk")
         .values_list("pk", flat=True))
    return conversation_ids


def rebuild(chunk: int = 20_000) -> dict:
    """Recompute every rollup and conversation mood from the raw tables."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _rebuild_in_sql()
        else:
            _rebuild_in_python(chunk)
        counts = {"rows": Rollup.objects.count(), "moods": ConversationMood.objects.count()}
        for _receiver, answer in rollups_rebuilt.send(sender=rebuild):
            counts.update(answer or {})
    return counts


def _rebuild_in_python(chunk: int) -> None:
    """Row by row (SQLite): every classification through `keys`, moods per chunk of conversations."""
    Rollup.objects.all().delete()
    ConversationMood.objects.all().delete()
    current = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND)
    totals: Counter = Counter()
    last_pk = 0
    while True:
        rows = list(current.filter(pk__gt=last_pk).order_by("pk").values_list("pk", *_FIELDS)[:chunk])
        if not rows:
            break
        last_pk = rows[-1][0]
        for row in rows:
            totals.update(keys(*row[1:]))
    apply({key: n for key, n in totals.items() if n})
    conversations = list(current.values_list("message__conversation_id", flat=True).distinct())
    for start in range(0, len(conversations), chunk):
        refresh_moods(conversations[start:start + chunk])


# --- The set-based rebuild (PostgreSQL) ---------------------------------------------------------
# The current classifications are read once: the first statement counts messages per (hour,
# reporting day, connector, channel, lane, language, sentiment, intent, emotion, term) into a
# temporary table, the rollup rows are sums over it. `keys` and `term_ids` say the same in Python.
_REBUILD_BASE = """
CREATE TEMPORARY TABLE rollup_rebuild ON COMMIT DROP AS
SELECT date_trunc('hour', m.sent_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
       date_trunc('day', m.sent_at AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS day,
       m.connector_id, m.channel, coalesce(c.lane, '') AS lane, coalesce(c.language, '') AS language,
       coalesce(c.sentiment, '') AS sentiment, coalesce(c.intent, '') AS intent,
       coalesce(c.emotion, '') AS emotion, t.term_id, count(*) AS n
FROM {classification} c
JOIN {message} m ON m.id = c.message_id
CROSS JOIN LATERAL (
  SELECT 0 AS term_id
  UNION
  -- term_ids(): the distinct positive integer term_ids of a list's topic objects
  SELECT (topic ->> 'term_id')::bigint
  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(c.topics) = 'array' THEN c.topics ELSE '[]'::jsonb END) AS topic
  WHERE jsonb_typeof(topic) = 'object' AND jsonb_typeof(topic -> 'term_id') = 'number'
    AND (topic ->> 'term_id') ~ '^[1-9][0-9]{{0,8}}$'
) AS t
WHERE c.is_current AND c.status = %(ok)s AND m.direction = %(inbound)s
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
"""

_REBUILD_ROLLUPS = """
INSERT INTO {rollup} (grain, dim, term_id, bucket, connector_id, channel, lane, language, value, count)
SELECT %(hour)s, 'sentiment', term_id, hour, connector_id, channel, lane, language, sentiment, sum(n)
  FROM rollup_rebuild GROUP BY term_id, hour, connector_id, channel, lane, language, sentiment
UNION ALL
SELECT %(day)s, 'sentiment', term_id, day, connector_id, channel, lane, language, sentiment, sum(n)
  FROM rollup_rebuild GROUP BY term_id, day, connector_id, channel, lane, language, sentiment
UNION ALL
SELECT %(day)s, 'intent', term_id, day, connector_id, channel, lane, language, intent, sum(n)
  FROM rollup_rebuild GROUP BY term_id, day, connector_id, channel, lane, language, intent
UNION ALL
SELECT %(day)s, 'emotion', term_id, day, connector_id, channel, lane, language, emotion, sum(n)
  FROM rollup_rebuild GROUP BY term_id, day, connector_id, channel, lane, language, emotion
"""

# refresh_moods for every conversation at once: the first and the latest inbound message with a
# current classification, ties to the lowest message id.
_REBUILD_MOODS = """
INSERT INTO {mood} (conversation_id, connector_id, channel, language, first_at, first_sentiment, last_at,
                    last_sentiment, inbound_count)
SELECT s.conversation_id, v.connector_id, v.channel, s.first_language, s.first_at, s.first_sentiment,
       s.last_at, s.last_sentiment, s.n
FROM (
  SELECT m.conversation_id, count(*) AS n, min(m.sent_at) AS first_at, max(m.sent_at) AS last_at,
         (array_agg(coalesce(c.sentiment, '') ORDER BY m.sent_at, m.id))[1] AS first_sentiment,
         (array_agg(coalesce(c.language, '') ORDER BY m.sent_at, m.id))[1] AS first_language,
         (array_agg(coalesce(c.sentiment, '') ORDER BY m.sent_at DESC, m.id))[1] AS last_sentiment
  FROM {classification} c JOIN {message} m ON m.id = c.message_id
  WHERE c.is_current AND c.status = %(ok)s AND m.direction = %(inbound)s
  GROUP BY m.conversation_id
) AS s
JOIN {conversation} v ON v.id = s.conversation_id
"""


def _rebuild_in_sql() -> None:
    tables = {"classification": Classification._meta.db_table, "message": Message._meta.db_table,
              "rollup": Rollup._meta.db_table, "mood": ConversationMood._meta.db_table,
              "conversation": Conversation._meta.db_table}
    params = {"tz": reporting_tz().key, "ok": Classification.Status.OK, "inbound": Direction.INBOUND,
              "hour": HOUR, "day": DAY}
    with connection.cursor() as cursor:
        # Emptied in the transaction (not TRUNCATE): the dashboards read the old rows until it commits.
        cursor.execute(f"DELETE FROM {tables['rollup']}")  # noqa: S608 - table names are constants
        cursor.execute(f"DELETE FROM {tables['mood']}")  # noqa: S608
        cursor.execute("SET LOCAL work_mem = '256MB'")  # the sums and sorts stay in memory
        # Dropped here too: inside an outer transaction ON COMMIT comes later, after a second rebuild.
        cursor.execute("DROP TABLE IF EXISTS pg_temp.rollup_rebuild")
        cursor.execute(_REBUILD_BASE.format(**tables), params)
        cursor.execute(_REBUILD_ROLLUPS.format(**tables), params)
        cursor.execute(_REBUILD_MOODS.format(**tables), params)
        cursor.execute("DROP TABLE pg_temp.rollup_rebuild")


def verify_window(start: datetime, end: datetime) -> dict:
    """Rollup keys in [start, end) whose count differs from a recount of the raw tables (empty:
    consistent). Day rows are compared only for days wholly inside the window."""
    current = Classification.objects.filter(
        is_current=True, status=Classification.Status.OK, message__direction=Direction.INBOUND,
        message__sent_at__gte=start - timedelta(days=1), message__sent_at__lt=end + timedelta(days=1),
    )
    expected = _counted(current)
    stored = Counter({
        (g, d, t, b, c, ch, la, lg, v): n
        for g, d, t, b, c, ch, la, lg, v, n in Rollup.objects.filter(bucket__gte=start, bucket__lt=end)
        .values_list(*_KEY_FIELDS, "count")
    })
    differences = {}
    for key in set(expected) | set(stored):
        bucket, grain = key[3], key[0]
        inside = start <= bucket and bucket + (timedelta(hours=1) if grain == HOUR else timedelta(days=1)) <= end
        if inside and expected.get(key, 0) != stored.get(key, 0):
            differences[key] = (stored.get(key, 0), expected.get(key, 0))
    return differences
