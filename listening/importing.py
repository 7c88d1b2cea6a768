"""Import historic messages from CSV or JSONL files into a connector.

`import_file` streams the file: rows are read one at a time and stored in batches through
listening.actions.ingest_messages, so memory stays flat whatever the file's size, each batch
commits on its own, and a re-run stores nothing twice (the (connector, external_id) constraint).
A malformed row is counted, reported with its line number and skipped; it never stops the run.

Columns are mapped to message fields (`mapping`: field -> column; JSONL keys may be dotted paths
into nested objects). Unmapped fields default to a column of the same name when there is one.

- `id`: the message id on the source. Float-formatted integers ("848.0", as pandas writes ids
  with gaps) are normalised to "848". Unmapped: a digest of author, time and text.
- `text`, `author` (the author's id), `sent_at`: required. `author_name`, `author_handle`,
  `subject`, `url`: optional.
- `sent_at`: ISO 8601, Unix seconds (or milliseconds), Twitter's "Tue Oct 31 23:36:20 +0000 2017",
  RFC 2822, or `date_format` (strptime) when given. Times without a zone are taken as UTC.
- `in_reply_to`: the id of the message answered. `responses`: ids of the messages that answered
  this one (comma-separated), as in Twitter exports. `thread`: an explicit thread id.
  Without a thread column, replies are threaded to the root of their reply chain, followed
  across both columns, even through messages missing from the file (the TWCS sample keeps the
  customers' tweets but not the brand's answers in between). The chain is indexed in a
  temporary SQLite file on disk during the run, never in memory.
- `direction`: a column saying whether the row came from the customer. true/1/yes/t/y/in/inbound
  mean inbound; false/0/no/f/n/out/outbound mean sent by the brand ("out"), so a TWCS `inbound`
  column maps directly: `direction=inbound`. Empty means inbound.
"""

from __future__ import annotations

import csv
import hashlib
import json
import queue
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from django.db import connection
from django.utils import timezone

from listening import times
from listening.actions import EXTERNAL_ID_MAX, ingest_messages
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.connectors.fileimport import FIELDS, validate_channel, validate_mapping
from listening.connectors.payload import from_unix
from listening.exceptions import ConfigInvalid, PayloadInvalid
from listening.ingest_sql import in_lookup
from listening.models import Connector, Contact, Conversation, Message

MAX_ERRORS = 100  # row errors kept in the report; all are counted
MAX_JSONL_LINE = 4 * 1024 * 1024
MAX_REPAIRED_RECORD = 1024 * 1024
REQUIRED = ("text", "author", "sent_at")
TRUE = {"true", "1", "yes", "t", "y", "in", "inbound"}
FALSE = {"false", "0", "no", "f", "n", "out", "outbound"}
MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                        "dec"), 1)}
TWITTER_TIME = re.compile(r"(?:[A-Za-z]{3} )?([A-Za-z]{3}) (\d{1,2}) (\d\d):(\d\d):(\d\d) ([+-]\d{4}) (\d{4})")
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
FLOAT_ID = re.compile(r"[+-]?\d+\.0*|[+-]?\d+(?:\.\d+)?[eE][+-]?\d+")
UNDECODABLE = re.compile(r"[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def reject(self, error: RowError, keep: int) -> None:
        self.rejected += 1
        if len(self.errors) < keep:
            self.errors.append(error)


class RowRejected(Exception):
    pass


def import_file(
    connector: Connector,
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    batch_size: int = 1000,
    progress: Callable[[ImportReport], None] | None = None,
    channel: str | None = None,
    date_format: str | None = None,
    max_errors: int = MAX_ERRORS,
) -> ImportReport:
    """Stream `path` (CSV or JSONL, from its extension unless `fmt` says) into `connector`.

    `mapping` (field -> column) overrides the connector's configured mapping, which overrides
    same-named columns. Raises ConfigInvalid for a bad format, mapping or channel and OSError
    if the file cannot be read; row problems are reported, not raised. `progress` is called
    with the running report after each batch."""
    path = Path(path)
    fmt = (fmt or _format_from_extension(path)).lower()
    if fmt not in {"csv", "jsonl"}:
        raise ConfigInvalid(f"format must be csv or jsonl, not {fmt!r}")
    if batch_size < 1:
        raise ConfigInvalid("batch_size must be at least 1")
    backend = connector.get_backend()
    configured = validate_mapping(backend.config.get("mapping") or {})
    mapping = {**configured, **validate_mapping(mapping or {})}
    channel = validate_channel(channel or backend.config.get("channel") or backend.channel)
    date_format = date_format if date_format is not None else backend.config.get("date_format", "")

    def rows() -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        return _csv_rows(path) if fmt == "csv" else _jsonl_rows(path)

    columns = _csv_header(path) if fmt == "csv" else None
    converter = _Converter(_effective_mapping(mapping, columns), channel, date_format or "")
    report = ImportReport()
    analyze_at = 2 * batch_size
    started = time.monotonic()
    index = _ThreadIndex.build(converter, rows()) if converter.follows_replies else None
    reported = -1
    batches = _Batches(converter, rows, batch_size)
    try:
        for batch, read, rejected in batches:
            report.rows += read
            for error in rejected:
                report.reject(error, max_errors)
            if batch:
                _store(connector, batch, index, report, max_errors)
            if len(batch) >= batch_size:
                if report.created >= analyze_at:
                    # A first import fills empty tables faster than autovacuum refreshes their
                    # statistics, and with stale ones the per-batch lookups become scans. Refresh
                    # them each time the import has doubled what it stored (a few cheap ANALYZEs).
                    _analyze()
                    analyze_at = 2 * report.created
                report.seconds = time.monotonic() - started
                if progress:
                    progress(report)
                    reported = report.rows
    finally:
        batches.close()
        if index:
            index.close()
    report.seconds = time.monotonic() - started
    if progress and report.rows != reported:
        progress(report)
    return report


class _Batches:
    """Converted batches of `batch_size` messages, read and converted one batch ahead in a thread.

    Reading and converting a batch is Python work that needs no database; storing the previous
    one is mostly waiting on PostgreSQL (the COPY, the upserts, the commit), which releases the
    GIL. On two cores the two now overlap instead of taking turns. The queue holds one batch, so
    at most three are in memory (being stored, queued, being built) whatever the file's size.

    Each item is (batch, rows read, row errors): the report is kept by the caller's thread alone,
    in file order. An exception in the reader (an unreadable file) is raised in the caller."""

    END = object()

    def __init__(self, converter: _Converter, rows: Callable[[], Iterator[tuple[int, dict[str, Any] | RowError]]],
                 batch_size: int) -> None:
        self.converter, self.rows, self.batch_size = converter, rows, batch_size
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="cxm-import-reader", daemon=True)
        self.thread.start()

    def __iter__(self) -> Iterator[tuple[list[tuple[int, InboundMessage]], int, list[RowError]]]:
        while True:
            item = self.queue.get()
            if item is self.END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _read(self) -> None:
        try:
            batch: list[tuple[int, InboundMessage]] = []
            errors: list[RowError] = []
            read = 0
            self.converter.refresh()
            for line, row in self.rows():
                read += 1
                if isinstance(row, RowError):
                    errors.append(row)
                    continue
                try:
                    batch.append((line, self.converter.message(row)))
                except RowRejected as exc:
                    errors.append(RowError(line, str(exc)))
                    continue
                if len(batch) >= self.batch_size:
                    if not self._put((batch, read, errors)):
                        return
                    batch, errors, read = [], [], 0
                    self.converter.refresh()
            if (batch or read) and not self._put((batch, read, errors)):
                return
            self._put(self.END)
        except BaseException as exc:  # handed to the caller, which raises it
            self._put(exc)

    def _put(self, item: Any) -> bool:
        """Queue `item`, waiting for room; False when the caller has stopped listening."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def _analyze() -> None:
    with connection.cursor() as cursor:
        for model in (Message, Conversation, Contact):
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def _format_from_extension(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".csv" in suffixes:
        return "csv"
    if {".jsonl", ".ndjson"} & set(suffixes):
        return "jsonl"
    raise ConfigInvalid(f"cannot tell the format of {path.name}: pass --format csv or jsonl")


def _effective_mapping(mapping: dict[str, str], columns: list[str] | None) -> dict[str, str]:
    if columns is None:  # JSONL: keys may differ per line, so every field defaults to its name
        return {**{f: f for f in FIELDS}, **mapping}
    effective = {**{f: f for f in FIELDS if f in columns}, **mapping}
    missing = {f: c for f, c in effective.items() if c not in columns}
    if missing:
        pairs = ", ".join(f"{f}={c}" for f, c in missing.items())
        raise ConfigInvalid(f"mapped columns not in the header ({pairs}); header: {', '.join(columns)}")
    absent = [f for f in REQUIRED if f not in effective]
    if absent:
        raise ConfigInvalid(f"map a column to {', '.join(absent)} (for example --map {absent[0]}=COLUMN)")
    return effective


# --- Reading --------------------------------------------------------------------------------------
class _Lines:
    """Feeds csv.reader and counts physical lines the way editors and grep -n do."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.unit = "\n"
        self.count = 0
        self.ending = ""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self.handle)
        self.count += line.count(self.unit)
        self.ending = "\r\n" if line.endswith("\r\n") else line[-1:] if line[-1:] in "\r\n" else ""
        return line


def _open_csv(path: Path) -> Any:
    # newline="" lets csv handle quoted line breaks; surrogateescape turns bad bytes into
    # markers a row check rejects, instead of an exception that would end the import.
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115


def _csv_header(path: Path) -> list[str]:
    with _open_csv(path) as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise ConfigInvalid(f"{path.name} has no header row")
    return [name.strip() for name in header]


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Rows as dicts keyed by header, with the physical line each starts on.

    Repairs one common defect: a line break inside an unquoted field. csv ends a record at any
    CR or LF, so such a row arrives as a short record whose line ended differently from the
    header's. Its fragments are joined back (the TWCS sample has bare CRs inside 6 tweets)."""
    with _open_csv(path) as handle:
        lines = _Lines(handle)
        reader = csv.reader(lines)
        header = [name.strip() for name in next(reader, [])]
        row_ending = lines.ending or "\n"
        lines.unit = "\r" if row_ending == "\r" else "\n"
        lines.count = 1
        pending: list[str] | None = None
        pending_line = 0
        while True:
            start = lines.count + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield start, RowError(start, f"unreadable CSV: {exc}")
                continue
            broken = lines.ending not in (row_ending, "")
            if pending is not None:
                if fields:
                    pending[-1] += "\n" + fields[0]
                    pending.extend(fields[1:])
                else:
                    pending[-1] += "\n"
                if len(pending) < len(header) and broken and len(pending[-1]) < MAX_REPAIRED_RECORD:
                    continue
                fields, start, pending = pending, pending_line, None
            elif not fields:
                continue  # a blank line
            elif len(fields) < len(header) and broken:
                pending, pending_line = fields, start
                continue
            if len(fields) != len(header):
                yield start, RowError(start, f"expected {len(header)} fields, found {len(fields)}")
            elif UNDECODABLE.search("\x1f".join(fields)):
                yield start, RowError(start, "row is not valid UTF-8")
            else:
                yield start, dict(zip(header, fields, strict=True))
        if pending is not None:
            yield pending_line, RowError(pending_line, f"expected {len(header)} fields, found {len(pending)}")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    with open(path, "rb") as handle:
        number = 0
        while True:
            raw = handle.readline(MAX_JSONL_LINE + 1)
            if not raw:
                break
            number += 1
            if len(raw) > MAX_JSONL_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line, in bounded reads
                    raw = handle.readline(MAX_JSONL_LINE)
                yield number, RowError(number, f"line is longer than {MAX_JSONL_LINE} bytes")
                continue
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield number, RowError(number, f"line is not valid UTF-8 (byte {exc.start + 1})")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RowError(number, f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(obj, dict):
                yield number, RowError(number, "line is not a JSON object")
                continue
            yield number, obj


# --- Converting -----------------------------------------------------------------------------------
class _Converter:
    def __init__(self, mapping: dict[str, str], channel: str, date_format: str) -> None:
        self.mapping = mapping
        self.channel = channel
        self.date_format = date_format
        self.follows_replies = "in_reply_to" in mapping or "responses" in mapping
        self.now = timezone.now()

    def refresh(self) -> None:
        """Take the time once per batch: the future bound on send times has a day of slack,
        and asking the clock per row was a tenth of the conversion's time."""
        self.now = timezone.now()

    def value(self, row: dict[str, Any], name: str) -> str:
        column = self.mapping.get(name)
        if not column:
            return ""
        value = row.get(column)
        if type(value) is str:  # every CSV value: no path to follow, nothing to convert
            return value.strip()
        return _scalar(_lookup(row, column))

    def links(self, row: dict[str, Any]) -> tuple[str, str, list[str]]:
        """(id, in_reply_to, responses) of a row, for the thread index."""
        responses = [normalise_id(r) for r in self.value(row, "responses").split(",")]
        return (normalise_id(self.value(row, "id")), normalise_id(self.value(row, "in_reply_to")),
                [r for r in responses if r])

    def message(self, row: dict[str, Any]) -> InboundMessage:
        text = self.value(row, "text")
        if not text:
            raise RowRejected("missing text")
        author = normalise_id(self.value(row, "author"))
        if not author:
            raise RowRejected("missing author")
        raw_time = self.value(row, "sent_at")
        if not raw_time:
            raise RowRejected("missing sent_at")
        sent_at = parse_timestamp(raw_time, self.date_format, now=self.now)
        if "id" in self.mapping:
            external_id = normalise_id(self.value(row, "id"))
            if not external_id:
                raise RowRejected("missing id")
        else:  # stable across runs, so re-importing an id-less file still dedupes
            seed = "\x00".join((author, sent_at.isoformat(), text))
            external_id = "sha256:" + hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()
        parent = normalise_id(self.value(row, "in_reply_to"))
        thread = normalise_id(self.value(row, "thread"))
        for name, value in (("id", external_id), ("author", author), ("in_reply_to", parent), ("thread", thread)):
            if len(value) > EXTERNAL_ID_MAX:
                raise RowRejected(f"{name} is longer than {EXTERNAL_ID_MAX} characters")
        return InboundMessage(
            external_id=external_id,
            text=text,
            author=InboundAuthor(
                external_id=author,
                display_name=self.value(row, "author_name"),
                handle=self.value(row, "author_handle"),
            ),
            sent_at=sent_at,
            channel=self.channel,
            thread_id=thread,
            parent_external_id=parent,
            subject=self.value(row, "subject"),
            url=self.value(row, "url"),
            direction=parse_direction(self.value(row, "direction")),
            raw=row,
        )


def _lookup(row: dict[str, Any], column: str) -> Any:
    if column in row:
        return row[column]
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def normalise_id(value: str) -> str:
    """"848.0" -> "848"; "8.48e2" -> "848"; other ids unchanged (stripped)."""
    value = value.strip()
    if value and FLOAT_ID.fullmatch(value):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return value
        if number == number.to_integral_value():
            return str(int(number))
    return value


def parse_direction(value: str) -> str:
    lowered = value.strip().lower()
    if not lowered or lowered in TRUE:
        return "in"
    if lowered in FALSE:
        return "out"
    raise RowRejected(f"direction must be true/false or in/out, not {value[:40]!r}")


def parse_timestamp(value: str, date_format: str = "", *, now: datetime | None = None) -> datetime:
    """A timezone-aware datetime from the formats exports use; naive times are UTC. `now`
    (default: the clock) bounds times in the future."""
    value = value.strip()
    parsed: datetime | None = None
    try:
        if date_format:
            parsed = datetime.strptime(value, date_format)
        elif NUMBER.fullmatch(value):
            parsed = from_unix(value, "sent_at")
        elif match := TWITTER_TIME.fullmatch(value):
            month, day, hour, minute, second, zone, year = match.groups()
            parsed = datetime.strptime(
                f"{year}-{MONTHS[month.lower()]:02d}-{int(day):02d} {hour}:{minute}:{second} {zone}",
                "%Y-%m-%d %H:%M:%S %z",
            )
        else:
            try:
                # ISO 8601 as listening.times.from_iso_text reads it; its range check is the one
                # below, done once (from_iso did it too, with a clock read of its own).
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                parsed = parsedate_to_datetime(value)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, PayloadInvalid):
        parsed = None
    if parsed is None:
        raise RowRejected(f"unrecognised date {value[:60]!r}")
    # The file can be corrected and imported again, so an out-of-range time rejects its row.
    checked = times.source_time(parsed, value, now=now)
    if isinstance(checked, times.OutOfRange):
        raise RowRejected(f"date {value[:60]!r} cannot be a send time: {getattr(checked, 'reason', '')}")
    return checked


# --- Storing --------------------------------------------------------------------------------------
def _store(connector: Connector, batch: list[tuple[int, InboundMessage]], index: _ThreadIndex | None,
           report: ImportReport, max_errors: int) -> None:
    if index:
        batch = index.thread(connector, batch)
    try:
        stored = ingest_messages(connector, [message for _, message in batch])
    except PayloadInvalid:
        # Rows were validated, so this is rare: find the culprit by storing one at a time.
        for line, message in batch:
            try:
                one = ingest_messages(connector, [message])
            except PayloadInvalid as exc:
                report.reject(RowError(line, str(exc)), max_errors)
                continue
            report.created += one.created
            report.duplicates += one.duplicates
        return
    report.created += stored.created
    report.duplicates += stored.duplicates


class _ThreadIndex:
    """Reply edges of the whole file (child -> parent), in a temporary SQLite file.

    Built in a first pass so a reply's thread does not depend on whether its parent comes
    earlier in the file. `in_reply_to` edges are the reply's own word and win over edges
    inferred from another row's `responses`."""

    def __init__(self) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="cxm-import-")
        self.db = sqlite3.connect(Path(self.directory.name) / "threads.sqlite3")
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE edge (child TEXT PRIMARY KEY, parent TEXT NOT NULL, stated INTEGER NOT NULL)"
            " WITHOUT ROWID;"
        )

    @classmethod
    def build(cls, converter: _Converter, rows: Iterator[tuple[int, dict[str, Any] | RowError]]) -> _ThreadIndex:
        index = cls()
        try:
            edges: list[tuple[str, str, int]] = []
            for _, row in rows:
                if isinstance(row, RowError):
                    continue
                own, parent, responses = converter.links(row)
                if own and parent and own != parent:
                    edges.append((own, parent, 1))
                edges.extend((child, own, 0) for child in responses if own and child != own)
                if len(edges) >= 5000:
                    index._add(edges)
                    edges = []
            index._add(edges)
        except BaseException:
            index.close()
            raise
        return index

    def _add(self, edges: list[tuple[str, str, int]]) -> None:
        self.db.executemany(
            "INSERT INTO edge VALUES (?, ?, ?) ON CONFLICT (child) DO UPDATE"
            " SET parent = excluded.parent, stated = 1 WHERE excluded.stated > edge.stated",
            edges,
        )
        self.db.commit()

    def root(self, node: str) -> str:
        seen = {node}
        for _ in range(10_000):
            found = self.db.execute("SELECT parent FROM edge WHERE child = ?", (node,)).fetchone()
            if not found or found[0] in seen:
                return node
            node = found[0]
            seen.add(node)
        return node

    def thread(self, connector: Connector, batch: list[tuple[int, InboundMessage]]) -> list[tuple[int, InboundMessage]]:
        """Give rows without an explicit thread the thread of their chain's root, or, when the
        root was stored earlier, the conversation it was stored in."""
        roots = {m.external_id: self.root(m.external_id) for _, m in batch if not m.thread_id}
        wanted = sorted(set(roots.values()))
        stored: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            stored.update(
                Message.objects.filter(connector=connector, **{in_lookup(): wanted[start : start + 500]})
                .values_list("external_id", "conversation__external_id")
            )
        threaded = []
        for line, message in batch:
            if message.external_id in roots:
                root = roots[message.external_id]
                message = _replace_thread(message, stored.get(root, root))
            threaded.append((line, message))
        return threaded

    def close(self) -> None:
        self.db.close()
        self.directory.cleanup()


def _replace_thread(message: InboundMessage, thread: str) -> InboundMessage:
    return replace(message, thread_id=thread[:EXTERNAL_ID_MAX])
