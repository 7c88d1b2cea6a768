"""Send times from sources: normalised to UTC and range-checked where they are parsed.

A source's clock is untrusted input. Python accepts what PostgreSQL refuses (a UTC offset of
+23:59: PostgreSQL stores at most ±15:59), and accepts instants the rest of the product cannot
do arithmetic on (year 1, year 9999). A time that cannot be a message's send time never reaches
the database as such:

- `source_time(value)` gives the instant in UTC when it is plausible (from EARLIEST to a day
  ahead of now, with an offset real zones use), else an `OutOfRange`;
- an `OutOfRange` *is* a datetime (the moment the message was received), carrying what the source
  said and why it was refused. Parsers hand it on as the send time; `ingest_messages` stores the
  received time and flags the message's raw with raw["_cxm"]["sent_at_invalid"] (polls and
  provider webhooks: a customer's message is never lost over its clock). Entry points whose
  sender can correct the value refuse it instead (`refuse_out_of_range`: the generic webhook,
  the file import).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from listening.exceptions import PayloadInvalid

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no source we read has messages older than this
FUTURE_SLACK = timedelta(days=1)  # clocks drift; a day ahead is a wrong clock, not drift
MAX_OFFSET = timedelta(hours=15, minutes=59)  # PostgreSQL's limit for a timestamptz offset
MILLISECONDS_ABOVE = 10_000_000_000  # some providers send Unix milliseconds (this is year 2286 in seconds)
ORIGINAL_MAX_CHARS = 100


class OutOfRange(datetime):
    """The received time, standing in for a source time that cannot be stored as sent.

    Arithmetic on it (datetime returns the subclass) keeps the type but not the attributes, so
    read them with getattr."""

    original: str
    reason: str


def received_instead(original: Any, reason: str, *, received_at: datetime | None = None) -> OutOfRange:
    """An OutOfRange for `original`, at `received_at` (default now) in UTC."""
    at = (received_at or timezone.now()).astimezone(UTC)
    value = OutOfRange(at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond, tzinfo=UTC)
    value.original = str(original)[:ORIGINAL_MAX_CHARS]
    value.reason = reason
    return value


def source_time(value: datetime, original: Any = None, *, received_at: datetime | None = None,
                now: datetime | None = None) -> datetime:
    """`value` in UTC when it can be a send time, else an OutOfRange at `received_at`.
    A naive value is taken as UTC."""
    if isinstance(value, OutOfRange):
        return value
    said = value.isoformat() if original is None else original
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset() or timedelta(0)
    if abs(offset) > MAX_OFFSET:
        return received_instead(said, f"its UTC offset {_offset(offset)} is beyond ±15:59",
                                received_at=received_at)
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return received_instead(said, "it is outside the calendar", received_at=received_at)
    now = now or timezone.now()
    if utc < EARLIEST:
        return received_instead(said, f"it is before {EARLIEST:%Y-%m-%d}", received_at=received_at)
    if utc > now + FUTURE_SLACK:
        return received_instead(said, "it is more than a day in the future", received_at=received_at)
    return utc


def from_unix_seconds(value: Any, where: str, *, received_at: datetime | None = None) -> datetime:
    """A Unix time (seconds, or milliseconds above MILLISECONDS_ABOVE; number or numeric text) in
    UTC, or an OutOfRange; PayloadInvalid when `value` is not a number at all."""
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PayloadInvalid(f"field {where} must be a Unix timestamp") from None
    if math.isnan(seconds):
        raise PayloadInvalid(f"field {where} must be a Unix timestamp")
    if seconds > MILLISECONDS_ABOVE:
        seconds /= 1000
    if not EARLIEST.timestamp() <= seconds <= (timezone.now() + FUTURE_SLACK).timestamp():
        reason = f"it is before {EARLIEST:%Y-%m-%d}" if seconds < EARLIEST.timestamp() else \
            "it is more than a day in the future"
        return received_instead(value, reason, received_at=received_at)
    return datetime.fromtimestamp(seconds, tz=UTC)


def from_iso_text(value: Any, where: str, *, received_at: datetime | None = None) -> datetime:
    """An ISO 8601 time (Z allowed; naive is UTC) in UTC, or an OutOfRange; PayloadInvalid when
    `value` is not ISO 8601 text."""
    if not isinstance(value, str):
        raise PayloadInvalid(f"field {where} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PayloadInvalid(f"field {where} must be an ISO 8601 timestamp") from None
    return source_time(parsed, value, received_at=received_at)


def refuse_out_of_range(value: datetime, where: str) -> datetime:
    """For entry points whose sender can correct the time: PayloadInvalid (a 400, a reported row)
    naming the field and the reason, instead of storing the received time."""
    if isinstance(value, OutOfRange):
        raise PayloadInvalid(f"field {where} ({describe(value)}) cannot be a send time: "
                             f"{getattr(value, 'reason', 'out of range')}")
    return value


def describe(value: OutOfRange) -> str:
    return getattr(value, "original", "") or "?"


def window_start(moment: datetime, delta: timedelta) -> datetime:
    """`moment - delta`, or the earliest datetime when that falls off the calendar (a window
    reaching back from a stored time never overflows, whatever the time)."""
    try:
        return moment - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
