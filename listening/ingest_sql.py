"""The SQL side of ingestion (listening.actions.ingest_messages) on the hot path: statements built
from tuples and arrays rather than ORM instances, and PostgreSQL-only shortcuts with their SQLite
fallbacks. Profiled in bench/README.md ("Where the time goes")."""

from __future__ import annotations

import json
import operator
from collections import defaultdict
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import connection
from django.db.models import F, Lookup, Q
from django.utils import timezone

from listening.models import Connector, Contact, Conversation, Message
from listening.sanitize import capped_payload, clean_json


class Counts(Protocol):
    @property
    def created(self) -> int: ...

    duplicates: int


class AnyLookup(Lookup):
    """`column = ANY(%s)` with the list as one array parameter. Django's `__in` prepares every
    value and writes a placeholder each: the lookups of a 1,000-row import batch spent more
    Python time on their IN lists than the database spent answering them."""

    lookup_name = "any"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*params, list(self.rhs)]


for _model in (Message, Conversation, Contact):
    _model._meta.get_field("external_id").register_lookup(AnyLookup)


def in_lookup() -> str:
    """`external_id__any` on PostgreSQL, `external_id__in` elsewhere (SQLite has no arrays)."""
    return "external_id__any" if connection.vendor == "postgresql" else "external_id__in"


class Tallies:
    """What the stored messages add to their conversations, authors and connector, and the
    replies that were waiting for them. Written once per call, after the inserts. The counter
    UPDATEs stay statements of their own, conversations then contacts, each in sorted id order:
    joined as CTEs into one statement, concurrent batched deliveries deadlocked on contact rows
    (7-13 per batched phase of bench/ingest.py). On PostgreSQL the orphan link and the
    connector's tally share one statement (3 round trips where there were 4 or 5)."""

    def __init__(self) -> None:
        self.created: list[tuple] = []

    def add(self, created: list[tuple]) -> None:
        self.created.extend(created)

    def write(self, connector: Connector, result: Counts) -> None:
        conversations = [(row[2], row[4]) for row in self.created]
        authors = [(row[3], row[4]) for row in self.created]
        bump_counters(Conversation, conversations, "last_message_at")
        bump_counters(Contact, authors, "last_seen_at")
        if connection.vendor != "postgresql" or not self.created:
            count_on_connector(connector, result)
            return
        parts: list[str] = []
        message = connection.ops.quote_name(Message._meta.db_table)
        # Replies stored before their parent (or in this call) now point at it; the predicate is
        # the partial index message_orphan_reply_idx's.
        parts.append(
            f"linked AS (UPDATE {message} SET parent_id = v.id FROM unnest(%s::bigint[], %s::text[]) AS v(id, ext) "  # noqa: S608
            f"WHERE {message}.connector_id = %s AND {message}.parent_id IS NULL "
            f"AND {message}.parent_external_id <> '' AND {message}.parent_external_id = ANY(%s::text[]) "
            f"AND {message}.parent_external_id = v.ext)"
        )
        # ANY(array) as well as the join: the planner then reads the index, where a join to unnest
        # alone may be planned as a scan of the connector's messages.
        external_ids = [row[1] for row in self.created]
        params = [[row[0] for row in self.created], external_ids, connector.pk, external_ids]
        table = connection.ops.quote_name(Connector._meta.db_table)
        sql = (
            f"WITH {', '.join(parts)} UPDATE {table} SET messages_received = messages_received + %s, "  # noqa: S608
            "duplicates_received = duplicates_received + %s, last_success_at = %s WHERE id = %s"
        )
        params += [result.created, result.duplicates, timezone.now(), connector.pk]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def insert_returning(rows: list[tuple]) -> list[tuple]:
    """Small chunks on PostgreSQL: one INSERT ... ON CONFLICT DO NOTHING RETURNING, which returns
    exactly the rows this call stored (a concurrent delivery's row is not ours)."""
    columns, names, json_at = message_columns()
    one = "(" + ", ".join(["%s"] * len(names)) + ")"
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(rows))} "  # noqa: S608
            "ON CONFLICT (connector_id, external_id) DO NOTHING "
            "RETURNING id, external_id, conversation_id, author_id, sent_at",
            [value for row in jsonb_rows(rows, json_at) for value in row],
        )
        return cursor.fetchall()


COPY_MIN_ROWS = 50


def message_columns() -> tuple[str, list[str], set[int]]:
    """Message's columns (quoted, for SQL), their attribute names, and the positions of JSON ones."""
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    json_at = {i for i, field in enumerate(fields) if field.get_internal_type() == "JSONField"}
    return columns, [field.attname for field in fields], json_at


def column_default(attname: str) -> Any:
    """The default of a column ingestion does not set (none today; a field added later)."""
    return next(f for f in Message._meta.concrete_fields if f.attname == attname).getcolumn_default()


def jsonb_rows(rows: list[tuple], json_at: set[int]) -> list[tuple]:
    from psycopg.types.json import Jsonb

    return [tuple(Jsonb(value) if i in json_at else value for i, value in enumerate(row)) for row in rows]


def capped(raw: Any) -> tuple[Any, bool]:
    """capped_payload, without encoding the JSON to measure it when it cannot be over the cap: a
    flat object of strings (a CSV row, most webhook bodies' size class) is at most 6 bytes of
    JSON per character (\\u00XX) plus quotes and separators."""
    limit = settings.RAW_PAYLOAD_MAX_BYTES
    if isinstance(raw, dict) and len(raw) < 1000:
        size = 2
        for key, value in raw.items():
            if type(key) is not str or type(value) is not str:
                return capped_payload(raw, limit)
            size += 6 * (len(key) + len(value)) + 8
        if size <= limit:
            # One check of all its text at once, in C, instead of clean_text per key and value
            # (a tenth of a file import's Python time): only a NUL or a lone surrogate needs it.
            text = "".join(raw) + "".join(raw.values())
            if "\x00" not in text and (text.isascii() or _encodes(text)):
                return dict(raw), False
            return clean_json(raw), False
    return capped_payload(raw, limit)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def copy_insert(rows: list[tuple]) -> list[tuple]:
    """Large chunks: COPY into a session temp table, then one INSERT ... ON CONFLICT DO NOTHING
    RETURNING, which returns exactly the rows this call stored.

    A reply whose parent is in the same chunk gets the parent's id in that INSERT: the ids are
    drawn from the table's sequence for the whole chunk before the rows are written. Linked
    afterwards (Tallies.write), each such reply was written twice, the second time through all
    of the table's indexes and its search vector again, and a file import's replies mostly
    answer a message of the same batch (an eighth of the rows in bench/profile_ingest.py)."""
    columns, names, json_at = message_columns()
    table = connection.ops.quote_name(Message._meta.db_table)
    quote = connection.ops.quote_name
    given = names.index("parent_id")
    select = ", ".join(
        f"COALESCE(s.{quote('parent_id')}, p.id)" if i == given else f"s.{quote(f.column)}"
        for i, f in enumerate(f for f in Message._meta.concrete_fields if not f.primary_key)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS ingest_chunk ON COMMIT DELETE ROWS AS "  # noqa: S608
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY ingest_chunk ({columns}) FROM STDIN") as copy:  # noqa: S608
            for row in jsonb_rows(rows, json_at):
                copy.write_row(row)
        # The ids of rows a concurrent call stored first are simply not used. Rows are inserted in
        # external id order, as before, so concurrent chunks take the unique index's locks in the
        # same order. (Drawing the ids by an UPDATE of the temp table cost as much as it saved.)
        sequence = f"pg_get_serial_sequence('{Message._meta.db_table}', 'id')"
        cursor.execute(
            f"WITH s AS MATERIALIZED (SELECT nextval({sequence}) AS id, {columns} FROM ingest_chunk) "  # noqa: S608
            f"INSERT INTO {table} (id, {columns}) SELECT s.id, {select} FROM s "
            "LEFT JOIN s AS p ON s.parent_id IS NULL AND s.parent_external_id <> '' "
            "AND p.external_id = s.parent_external_id "
            "ORDER BY s.external_id "
            "ON CONFLICT (connector_id, external_id) DO NOTHING "
            "RETURNING id, external_id, conversation_id, author_id, sent_at, parent_id"
        )
        returned = cursor.fetchall()
        if len(returned) < len(rows):
            # A concurrent call stored some of these first, so their drawn ids were not used: a
            # reply given one points at the stored row instead (the foreign key is checked at
            # commit). Found by the pointer, not remembered: this is the rare path.
            ids = {row[0] for row in returned}
            at = names.index("external_id")
            drawn = {row[at] for row in rows if row[given] is None}  # parent, if any, found in the chunk
            dangling = [row[0] for row in returned if row[1] in drawn and row[5] is not None and row[5] not in ids]
            if dangling:
                cursor.execute(
                    f"UPDATE {table} AS m SET parent_id = (SELECT e.id FROM {table} AS e "  # noqa: S608
                    "WHERE e.connector_id = m.connector_id AND e.external_id = m.parent_external_id) "
                    f"WHERE m.id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM {table} AS x WHERE x.id = m.parent_id)",
                    [dangling],
                )
        cursor.execute("TRUNCATE ingest_chunk")
    return [row[:5] for row in returned]


def insert_or_get(objs: list, unique: list[str]) -> list:
    """Insert `objs` and set their ids; a row a concurrent call inserted first keeps its values
    and gives its id (read back, on PostgreSQL, only when that happened). On SQLite, which locks
    the whole database, bulk_create's no-op update returns those ids. On PostgreSQL the statement
    is built here from the instances' values: bulk_create's per-value preparation was a third of
    an import batch's Python time."""
    if not objs:
        return objs
    model = type(objs[0])
    if connection.vendor != "postgresql":
        names = [model._meta.get_field(name).name for name in unique]  # connector_id -> connector
        return model.objects.bulk_create(objs, update_conflicts=True, unique_fields=names, update_fields=names[:1])
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    keys = ", ".join(quote(model._meta.get_field(name).column) for name in unique)
    with connection.cursor() as cursor:
        if len(objs) >= COPY_MIN_ROWS and not any(f.get_internal_type() == "JSONField" for f in fields):
            # Many rows (a file import's batch): COPY, whose rows psycopg formats in C, where the
            # arrays below are dumped element by element in Python (17 us per contact, 4 here).
            # The temp table keeps COPY's order, the callers' sorted one, for the INSERT.
            stage = quote(f"ingest_{model._meta.db_table}")
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT {columns} FROM {table} WITH NO DATA"
            )
            row_of = operator.attrgetter(*(field.attname for field in fields))
            with cursor.cursor.copy(f"COPY {stage} ({columns}) FROM STDIN") as copy:  # noqa: S608
                for obj in objs:
                    copy.write_row(row_of(obj))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} "  # noqa: S608
                f"ON CONFLICT ({keys}) DO NOTHING RETURNING id, {keys}"
            )
            ids = {tuple(row[1:]): row[0] for row in cursor.fetchall()}
            cursor.execute(f"TRUNCATE {stage}")
        else:
            # One array per column, not a placeholder per value: the statement stays small whatever
            # the row count (a 1,000-contact VALUES list was 15,000 placeholders to build and parse).
            arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
            params = [[getattr(obj, field.attname) for obj in objs] for field in fields]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "  # noqa: S608
                f"ON CONFLICT ({keys}) DO NOTHING RETURNING id, {keys}",
                params,
            )
            ids = {tuple(row[1:]): row[0] for row in cursor.fetchall()}
        inserted, raced = [], []
        for obj in objs:
            key = tuple(getattr(obj, name) for name in unique)
            if key in ids:
                obj.pk = ids[key]
                obj._state.adding = False
                inserted.append(obj)
            else:
                raced.append(key)
    if raced:
        # Rows a concurrent call inserted first: read back as they are (its customer link, its
        # thread's contact), not locked. DO UPDATE would lock them here, before this delivery's
        # counter UPDATE locks others, and concurrent batches deadlocked on the two orders.
        query = Q()
        for key in raced:
            query |= Q(**dict(zip(unique, key, strict=True)))
        inserted += list(model.objects.filter(query))
    return inserted


def bump_counters(model: type, rows: list[tuple[int, datetime]], latest_field: str) -> None:
    """Add to message_count and move the latest timestamp forward in one UPDATE ... FROM VALUES,
    in SQL so concurrent ingestions never lose an increment."""
    sql, params = bump_sql(model, rows, latest_field)
    if sql:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def bump_sql(model: type, rows: list[tuple[int, datetime]], latest_field: str) -> tuple[str, list]:
    counts: dict[int, int] = defaultdict(int)
    latest: dict[int, datetime] = {}
    for pk, when in rows:
        if pk is None:
            continue
        counts[pk] += 1
        latest[pk] = max(latest.get(pk, when), when)
    if not counts:
        return "", []
    quote, adapt = connection.ops.quote_name, connection.ops.adapt_datetimefield_value
    table, column = quote(model._meta.db_table), quote(latest_field)
    ids = sorted(counts)
    set_clause = (f"UPDATE {table} SET message_count = message_count + v.column2, "  # noqa: S608
                  f"{column} = CASE WHEN {column} < v.column3 THEN v.column3 ELSE {column} END ")
    if connection.vendor == "postgresql" and len(ids) >= COPY_MIN_ROWS:
        # Many ids (a file import's batch): psycopg spent 20 us of Python per message parsing and
        # adapting the VALUES list below (~3,000 placeholders). One JSON parameter instead, and
        # the rows locked first by a SELECT ... ORDER BY id FOR NO KEY UPDATE: its locks are taken
        # as the sort emits them, in id order, and the UPDATE only touches rows already locked,
        # so concurrent calls still wait for each other in the same order, whatever the join plan.
        payload = json.dumps([[pk, counts[pk], latest[pk].isoformat()] for pk in ids])
        locked = (
            "WITH v AS MATERIALIZED (SELECT (e->>0)::bigint AS column1, (e->>1)::integer AS column2, "  # noqa: S608
            "(e->>2)::timestamptz AS column3 FROM json_array_elements(%s::json) AS e), "
            f"locked AS (SELECT {table}.id FROM {table} WHERE {table}.id IN (SELECT column1 FROM v) "
            f"ORDER BY {table}.id FOR NO KEY UPDATE) "
        )
        where = f"FROM v WHERE {table}.id = v.column1 AND {table}.id IN (SELECT id FROM locked)"  # noqa: S608
        return locked + set_clause + where, [payload]
    if connection.vendor == "postgresql":
        # A VALUES row per id in sorted order, as before: the join then drives from the sorted
        # list and concurrent deliveries lock the same rows in the same order. (unnest arrays let
        # the planner hash the other side: 27 deadlocks in one batched-delivery phase.)
        row = "(CAST(%s AS bigint), %s, CAST(%s AS timestamptz))"
        sql = set_clause + f"FROM (VALUES {', '.join([row] * len(ids))}) AS v WHERE {table}.id = v.column1"
        return sql, [value for pk in ids for value in (pk, counts[pk], adapt(latest[pk]))]
    # SQLite stores datetimes as text and names VALUES columns column1, column2, ...
    # Identifiers come from model metadata and are quoted; values are parameters.
    sql = set_clause + f"FROM (VALUES {', '.join(['(%s, %s, %s)'] * len(ids))}) AS v WHERE {table}.id = v.column1"
    return sql, [value for pk in ids for value in (pk, counts[pk], adapt(latest[pk]))]


def count_on_connector(connector: Connector, result: Counts) -> None:
    if not result.created and not result.duplicates:
        return
    updates: dict[str, Any] = {
        "messages_received": F("messages_received") + result.created,
        "duplicates_received": F("duplicates_received") + result.duplicates,
    }
    if result.created:
        updates["last_success_at"] = timezone.now()
    Connector.objects.filter(pk=connector.pk).update(**updates)
