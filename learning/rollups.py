"""Rollups: the dashboards' counts, kept current in the transaction that classifies.

`record(old, new)` runs inside `actions._store`, after the conversations of the batch are locked:
every classification that stops being current is subtracted from its rows and every new current
one is added, so a re-classification moves a message between rows and a retried batch never
counts it twice. `rebuild()` recomputes everything from the raw tables (after an upgrade, or as a
repair); `manage.py rebuild_rollups` runs it. On PostgreSQL it is set-based: a few INSERT ...
SELECT statements into new tables swapped in (`replace_table`), no row read into Python (1M
messages: see bench/README.md, dashboards). It
sends `rollups_rebuilt` inside its transaction, so the apps above (insight's care rollup) rebuild
theirs in the same one.

Buckets: hourly rows start at UTC hours; daily rows start at midnight in the reporting time zone
(`CXM_REPORT_TIME_ZONE`, default `TIME_ZONE`), stored as that instant in UTC; weekly rows at
Monday's midnight and monthly rows at the first's, in that zone. Weeks and months carry sentiment
only (sentiment rows summed are volume, and with a term, topics): a period of months reads a few
rows per month instead of a row per day, so long ranges cost about what a week costs (`spans`).
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

HOUR, DAY, WEEK, MONTH = "h", "d", "w", "m"
DIMS_BY_GRAIN = {HOUR: ("sentiment",), DAY: ("sentiment", "intent", "emotion"), WEEK: ("sentiment",),
                 MONTH: ("sentiment",)}
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


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())  # Monday, as the dashboards' week buckets


def spans(start: date, end: date, *, months: bool = True) -> list[tuple[str, datetime, datetime]]:
    """(grain, from, until) covering the days [start, end] with the fewest rollup rows: whole
    months (unless `months` is False: a weekly series cannot split a month), whole weeks in what
    is left, days at the edges. For the sentiment rows only (the grains weeks and months keep)."""
    after = end + timedelta(days=1)
    out: list[tuple[str, date, date]] = []

    def weeks_and_days(a: date, b: date) -> None:
        w0 = week_start(a) if a.weekday() == 0 else week_start(a) + timedelta(days=7)
        w1 = week_start(b)
        if w0 < w1:
            out.extend(x for x in ((DAY, a, w0), (WEEK, w0, w1), (DAY, w1, b)) if x[1] < x[2])
        elif a < b:
            out.append((DAY, a, b))

    m0 = start if start.day == 1 else date(start.year + start.month // 12, start.month % 12 + 1, 1)
    m1 = after.replace(day=1)
    if months and m0 < m1:
        weeks_and_days(start, m0)
        out.append((MONTH, m0, m1))
        weeks_and_days(m1, after)
    else:
        weeks_and_days(start, after)
    return [(grain, day_start(a), day_start(b)) for grain, a, b in out]


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
    day = local_day(sent_at)
    buckets = {HOUR: hour_bucket(sent_at), DAY: day_start(day), WEEK: day_start(week_start(day)),
               MONTH: day_start(day.replace(day=1))}
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
-- Weeks and months are sums of the day rows (324k at 1M messages), not further passes over the
-- temporary table (1.7M rows: each GROUP BY over it took ~7 s at load 13).
WITH day_sentiment AS MATERIALIZED (
  SELECT term_id, day, connector_id, channel, lane, language, sentiment, sum(n) AS n
  FROM rollup_rebuild GROUP BY term_id, day, connector_id, channel, lane, language, sentiment
)
INSERT INTO {rollup} (grain, dim, term_id, bucket, connector_id, channel, lane, language, value, count)
SELECT %(hour)s, 'sentiment', term_id, hour, connector_id, channel, lane, language, sentiment, sum(n)
  FROM rollup_rebuild GROUP BY term_id, hour, connector_id, channel, lane, language, sentiment
UNION ALL
SELECT %(day)s, 'sentiment', term_id, day, connector_id, channel, lane, language, sentiment, n FROM day_sentiment
UNION ALL
SELECT %(week)s, 'sentiment', term_id, week, connector_id, channel, lane, language, sentiment, sum(n)
  FROM (SELECT *, date_trunc('week', day AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS week FROM day_sentiment) AS w
  GROUP BY term_id, week, connector_id, channel, lane, language, sentiment
UNION ALL
SELECT %(month)s, 'sentiment', term_id, month, connector_id, channel, lane, language, sentiment, sum(n)
  FROM (SELECT *, date_trunc('month', day AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s AS month FROM day_sentiment) AS m
  GROUP BY term_id, month, connector_id, channel, lane, language, sentiment
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


def replace_table(cursor, table: str, fill: str, params=None) -> int:
    """Rebuild `table` (PostgreSQL) as a new table filled by `fill` (SQL with `{table}` where the
    new table's name goes), then put it in the old one's place, inside the caller's transaction.

    Why not DELETE and INSERT: each row inserted into a table with its indexes in place is a
    descent into every btree (2.3M rows: most of the old rebuild's time), and the deleted rows stay
    in the table and its indexes. Here the rows go into a bare table, each index and constraint is
    built afterwards with one sort, and the old table is dropped. Writers (the workers' `record`,
    care's triggers) wait from the start (EXCLUSIVE lock); readers keep reading the old rows until
    the swap at the end, which waits for them a moment (ACCESS EXCLUSIVE), then find the new table
    by name. Columns, defaults, identity, NOT NULL and CHECK constraints come with LIKE; primary
    key, unique and foreign-key constraints and the other indexes are recreated from the catalog
    under their names. Grants are not copied (the application's user owns these tables).
    Returns the number of rows."""
    new = f"{table}_rebuilt"
    cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
    cursor.execute(f"DROP TABLE IF EXISTS {new}")
    cursor.execute(f"CREATE TABLE {new} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)")
    cursor.execute(fill.format(table=new), params)
    rows = cursor.rowcount
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype IN ('p', 'u', 'f') ORDER BY contype = 'f', conname", [table])  # foreign keys last
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid "
        "AND c.conrelid = x.indrelid) ORDER BY 1", [table])
    indexes = cursor.fetchall()
    renames = []
    for i, (name, definition) in enumerate(constraints):
        cursor.execute(f"ALTER TABLE {new} ADD CONSTRAINT {new}_c{i} {definition}")
        renames.append(f"ALTER TABLE {table} RENAME CONSTRAINT {new}_c{i} TO {name}")
    for i, (name, definition) in enumerate(indexes):
        head, _, rest = definition.partition(f" INDEX {name} ON ")
        rest = rest.split(" USING ", 1)[1]
        cursor.execute(f"{head} INDEX {new}_i{i} ON {new} USING {rest}")
        renames.append(f"ALTER INDEX {new}_i{i} RENAME TO {name}")
    cursor.execute(f"ANALYZE {new}")  # the panels' plans want statistics from the first read
    # A table with foreign-key checks still deferred in this transaction (rows written earlier in
    # it) cannot be dropped: run them now, then defer again (Django's constraints are all
    # DEFERRABLE INITIALLY DEFERRED).
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    cursor.execute(f"DROP TABLE {table}")
    cursor.execute(f"ALTER TABLE {new} RENAME TO {table}")
    for rename in renames:
        cursor.execute(rename)
    cursor.execute("SELECT pg_get_serial_sequence(%s, attname) FROM pg_attribute WHERE attrelid = %s::regclass "
                   "AND attidentity <> ''", [table, table])
    for (sequence,) in cursor.fetchall():
        if sequence and sequence.rsplit(".", 1)[-1] != f"{table}_id_seq":
            cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {table}_id_seq")
    return rows


def _rebuild_in_sql() -> None:
    tables = {"classification": Classification._meta.db_table, "message": Message._meta.db_table,
              "rollup": Rollup._meta.db_table, "mood": ConversationMood._meta.db_table,
              "conversation": Conversation._meta.db_table}
    params = {"tz": reporting_tz().key, "ok": Classification.Status.OK, "inbound": Direction.INBOUND,
              "hour": HOUR, "day": DAY, "week": WEEK, "month": MONTH}
    with connection.cursor() as cursor:
        # Both tables locked against writers before anything is read: a worker classifying now
        # waits, then moves its counts in the rebuilt rows (see replace_table).
        cursor.execute(f"LOCK TABLE {tables['rollup']}, {tables['mood']} IN EXCLUSIVE MODE")
        cursor.execute("SET LOCAL work_mem = '256MB'")  # the sums and sorts stay in memory
        # Dropped here too: inside an outer transaction ON COMMIT comes later, after a second rebuild.
        cursor.execute("DROP TABLE IF EXISTS pg_temp.rollup_rebuild")
        cursor.execute(_REBUILD_BASE.format(**tables), params)
        replace_table(cursor, tables["rollup"], _REBUILD_ROLLUPS.format(**{**tables, "rollup": "{table}"}), params)
        replace_table(cursor, tables["mood"], _REBUILD_MOODS.format(**{**tables, "mood": "{table}"}), params)
        cursor.execute("DROP TABLE pg_temp.rollup_rebuild")


def bucket_end(grain: str, bucket: datetime) -> datetime:
    """The instant a rollup row's bucket ends."""
    if grain == HOUR:
        return bucket + timedelta(hours=1)
    day = local_day(bucket)
    if grain == WEEK:
        return day_start(day + timedelta(days=7))
    if grain == MONTH:
        return day_start(date(day.year + day.month // 12, day.month % 12 + 1, 1))
    return day_start(day + timedelta(days=1))


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
        inside = start <= bucket and bucket_end(grain, bucket) <= end
        if inside and expected.get(key, 0) != stored.get(key, 0):
            differences[key] = (stored.get(key, 0), expected.get(key, 0))
    return differences
