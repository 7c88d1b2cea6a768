"""Signals in: the one way any entry point (signed webhook, REST API, MQTT, CSV) stores signals.

`parse_signal` turns one JSON object of the documented schema (README, "Signals") into an
`InboundSignal`, refusing unknown types, payloads that break their type's schema or size bound,
and times in the future or older than the retention. `ingest_signals` matches each to a Customer
by a verified identifier (the customer's email or phone, a contact on a channel, or a device
already bound to the customer), stores it once per (source, external_id) under a database
constraint, and on commit announces the new ids with `listening.signals.signals_ingested`.

Strict callers (webhook, API: someone can be told) get PayloadInvalid and nothing is stored if
any signal is refused; lenient ones (MQTT, CSV) store the good ones and record the others as
SignalRejection rows.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from listening import times
from listening.connectors.payload import from_iso
from listening.exceptions import PayloadInvalid
from listening.models import Contact, Customer, Device, Signal, SignalRejection
from listening.sanitize import clean_text
from listening.signal_types import get_type
from listening.signals import signals_ingested

logger = logging.getLogger(__name__)

ID_MAX = 255
DEVICE_MAX = 120
SOURCE_MAX = 80
MAX_PER_CALL = 5000
CHUNK = 500
IDENTIFIERS = ("email", "phone", "channel", "contact_id")


@dataclass(frozen=True)
class CustomerRef:
    """How a signal names its customer: any one verified identifier is enough."""

    email: str = ""
    phone: str = ""
    channel: str = ""
    contact_id: str = ""

    def __bool__(self) -> bool:
        return bool(self.email or self.phone or (self.channel and self.contact_id))


@dataclass(frozen=True)
class InboundSignal:
    external_id: str
    type: str
    occurred_at: datetime
    customer: CustomerRef = field(default_factory=CustomerRef)
    device_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class SignalIngestResult:
    created_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (external id, reason)

    @property
    def created(self) -> int:
        return len(self.created_ids)

    def as_dict(self) -> dict[str, Any]:
        return {"stored": self.created, "duplicates": self.duplicates,
                "rejected": [{"id": i, "reason": r} for i, r in self.rejected]}


def parse_signal(item: Any, where: str = "signal", *, device_id: str = "", now: datetime | None = None
                 ) -> InboundSignal:
    """One signal object of the documented schema, checked; PayloadInvalid names what is wrong."""
    if not isinstance(item, dict):
        raise PayloadInvalid(f"{where} must be an object")
    unknown = set(item) - {"id", "type", "occurred_at", "customer", "device_id", "payload"}
    if unknown:
        raise PayloadInvalid(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))[:200]}")
    external_id = _text(item.get("id"), f"{where}.id", ID_MAX, required=True)
    kind = get_type(item.get("type"))
    occurred_at = check_time(item.get("occurred_at"), f"{where}.occurred_at", now=now)
    device = _text(item.get("device_id"), f"{where}.device_id", DEVICE_MAX) or device_id
    customer = _customer_ref(item.get("customer"), f"{where}.customer")
    if not customer and not device:
        raise PayloadInvalid(f"{where} names no customer (customer.email, .phone, .channel with .contact_id) "
                             "and no device_id")
    payload = kind.clean(item.get("payload"), f"{where}.payload")
    return InboundSignal(external_id, kind.name, occurred_at, customer, device, payload)


def check_time(value: Any, where: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 or Unix seconds; missing means now. Refuses a time ahead of the clock by more than
    CXM_SIGNAL_FUTURE_SECONDS or older than the retention (it would be deleted at once)."""
    now = now or timezone.now()
    if value is None or value == "":
        return now
    if isinstance(value, bool):
        raise PayloadInvalid(f"{where} must be ISO 8601 text or Unix seconds")
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(float(value), tz=UTC)
        elif isinstance(value, str):
            moment = from_iso(value, where)
        else:
            raise PayloadInvalid(f"{where} must be ISO 8601 text or Unix seconds")
    except (OverflowError, OSError, ValueError):
        raise PayloadInvalid(f"{where} is not a time") from None
    if isinstance(moment, times.OutOfRange):
        raise PayloadInvalid(f"{where} cannot be a time: {getattr(moment, 'reason', '')}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now + timedelta(seconds=settings.CXM_SIGNAL_FUTURE_SECONDS):
        raise PayloadInvalid(f"{where} is in the future ({moment.isoformat()[:25]})")
    if moment < now - timedelta(days=settings.CXM_SIGNAL_RETENTION_DAYS):
        raise PayloadInvalid(f"{where} is older than the {settings.CXM_SIGNAL_RETENTION_DAYS}-day retention")
    return moment


def _text(value: Any, where: str, limit: int, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise PayloadInvalid(f"{where} is required")
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > limit or clean_text(value) != value:
        raise PayloadInvalid(f"{where} must be text of 1 to {limit} characters without NUL")
    return value


def _customer_ref(value: Any, where: str) -> CustomerRef:
    if value is None:
        return CustomerRef()
    if not isinstance(value, dict) or set(value) - set(IDENTIFIERS):
        raise PayloadInvalid(f"{where} must be an object with email, phone, or channel and contact_id")
    ref = CustomerRef(**{name: _text(value.get(name), f"{where}.{name}", 254) for name in IDENTIFIERS})
    if bool(ref.channel) != bool(ref.contact_id):
        raise PayloadInvalid(f"{where}.channel and .contact_id go together")
    return ref


def ingest_signals(source: str, signals: Iterable[InboundSignal], *, strict: bool) -> SignalIngestResult:
    """Store parsed signals exactly once per (source, external_id) and announce them on commit.

    Strict: a repeated id within the call or an unmatched customer raises PayloadInvalid and
    nothing is stored. Lenient: those are returned in `rejected` (the caller records them).
    Signals stored before (a redelivery) count as duplicates in both modes."""
    source = _text(source, "source", SOURCE_MAX, required=True)
    signals = list(signals)
    if len(signals) > MAX_PER_CALL:
        raise PayloadInvalid(f"at most {MAX_PER_CALL} signals at once")
    result = SignalIngestResult()
    unique: list[InboundSignal] = []
    seen: set[str] = set()
    for signal in signals:
        if signal.external_id in seen:
            if strict:
                raise PayloadInvalid(f"signal id {signal.external_id[:60]!r} appears twice in this delivery")
            result.duplicates += 1
            continue
        seen.add(signal.external_id)
        unique.append(signal)
    with transaction.atomic():
        matched = _match_customers(unique)
        kept = []
        for signal in unique:
            if signal.external_id in matched:
                kept.append(signal)
            else:
                result.rejected.append((signal.external_id, "no customer matches this signal's identifiers"))
        if strict and result.rejected:
            raise PayloadInvalid(f"signal {result.rejected[0][0][:60]!r}: {result.rejected[0][1]}"
                                 + (f" (and {len(result.rejected) - 1} more)" if len(result.rejected) > 1 else ""))
        _bind_devices(kept, matched)
        for start in range(0, len(kept), CHUNK):
            _store_chunk(source, kept[start:start + CHUNK], matched, result)
        if result.created_ids:
            ids = list(result.created_ids)
            transaction.on_commit(lambda: _announce(ids))
    return result


def _announce(ids: list[int]) -> None:
    for receiver, outcome in signals_ingested.send_robust(sender=Signal, signal_ids=ids):
        if isinstance(outcome, Exception):
            logger.error("signals_ingested receiver %r failed: %r", receiver, outcome, exc_info=outcome)


def _match_customers(signals: Sequence[InboundSignal]) -> dict[str, tuple[int, bool]]:
    """external id -> (customer id, whether an identifier other than the device named it), in at
    most four queries whatever the batch size. Customer.email and .phone hold only verified
    identifiers (listening.actions.match_customer), so matching on them never merges strangers."""
    # Emails as sent and lower-cased: exact lookups the index serves (an iexact per address is not).
    emails = {e for s in signals if s.customer.email for e in (s.customer.email, s.customer.email.lower())}
    phones = {s.customer.phone for s in signals if s.customer.phone}
    contacts = {(s.customer.channel, s.customer.contact_id) for s in signals if s.customer.contact_id}
    devices = {s.device_id for s in signals if s.device_id}
    by_email: dict[str, int] = {}
    by_phone: dict[str, int] = {}
    if emails or phones:
        query = Q(email__in=emails) | Q(phone__in=phones)
        for pk, email, phone in Customer.objects.filter(query).order_by("-id").values_list("id", "email", "phone"):
            by_email[email.lower()] = pk  # ordered newest first: the oldest customer wins, as in match_customer
            by_phone[phone] = pk
    by_contact: dict[tuple[str, str], int] = {}
    if contacts:
        query = Q()
        for channel, external_id in contacts:
            query |= Q(channel=channel, external_id=external_id)
        for channel, external_id, customer_id in Contact.objects.filter(query, customer__isnull=False).values_list(
                "channel", "external_id", "customer_id"):
            by_contact[(channel, external_id)] = customer_id
    by_device = dict(Device.objects.filter(device_id__in=devices).values_list("device_id", "customer_id")) \
        if devices else {}
    matched: dict[str, tuple[int, bool]] = {}
    for s in signals:
        ref = s.customer
        customer_id = (by_email.get(ref.email.lower()) if ref.email else None) or \
            (by_phone.get(ref.phone) if ref.phone else None) or by_contact.get((ref.channel, ref.contact_id))
        if customer_id:
            matched[s.external_id] = (customer_id, True)
        elif s.device_id in by_device:
            matched[s.external_id] = (by_device[s.device_id], False)
    return matched


def _bind_devices(signals: Sequence[InboundSignal], matched: dict[str, tuple[int, bool]]) -> None:
    """A signal naming both a device and its customer teaches us the device: later signals that
    name only the device (an MQTT topic) find the customer. A device keeps its first owner."""
    new = {}
    for s in signals:
        customer_id, by_identifier = matched[s.external_id]
        if s.device_id and by_identifier:
            new.setdefault(s.device_id, customer_id)
    if new:
        Device.objects.bulk_create([Device(device_id=d, customer_id=c) for d, c in sorted(new.items())],
                                   ignore_conflicts=True)


def _store_chunk(source: str, chunk: Sequence[InboundSignal], matched: dict[str, tuple[int, bool]],
                 result: SignalIngestResult) -> None:
    """Insert the chunk once per (source, external id) and keep the ids of the rows this call stored.
    PostgreSQL: one INSERT ... SELECT FROM unnest(arrays) ... ON CONFLICT DO NOTHING RETURNING, which
    returns exactly our rows whether an id was stored before or by a concurrent delivery (it was a
    SELECT of existing ids, an INSERT and a SELECT of ours). Elsewhere: the same in three queries."""
    rows = sorted(chunk, key=lambda s: s.external_id)  # the same lock order for concurrent deliveries
    batch, now = uuid.uuid4(), timezone.now()
    if connection.vendor == "postgresql":
        created = _insert_returning(source, rows, matched, batch, now)
    else:
        created = _insert_portable(source, rows, matched, batch, now)
    result.created_ids.extend(created)
    result.duplicates += len(rows) - len(created)


def _insert_returning(source: str, rows: Sequence[InboundSignal], matched: dict[str, tuple[int, bool]],
                      batch: uuid.UUID, now: datetime) -> list[int]:
    table = connection.ops.quote_name(Signal._meta.db_table)
    sql = (f"INSERT INTO {table} (source, external_id, type, customer_id, device_id, occurred_at, received_at, "  # noqa: S608
           "payload, ingest_batch) SELECT %s, v.ext, v.type, v.customer, v.device, v.at, %s, v.payload::jsonb, %s "
           "FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::timestamptz[], %s::text[]) "
           "AS v(ext, type, customer, device, at, payload) ORDER BY v.ext "
           "ON CONFLICT (source, external_id) DO NOTHING RETURNING id")
    params = [source, now, batch, [s.external_id for s in rows], [s.type for s in rows],
              [matched[s.external_id][0] for s in rows], [s.device_id for s in rows], [s.occurred_at for s in rows],
              [json.dumps(s.payload) for s in rows]]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(row[0] for row in cursor.fetchall())


def _insert_portable(source: str, rows: Sequence[InboundSignal], matched: dict[str, tuple[int, bool]],
                     batch: uuid.UUID, now: datetime) -> list[int]:
    ids = [s.external_id for s in rows]
    existing = set(Signal.objects.filter(source=source, external_id__in=ids).values_list("external_id", flat=True))
    fresh = [Signal(source=source, external_id=s.external_id, type=s.type, customer_id=matched[s.external_id][0],
                    device_id=s.device_id, occurred_at=s.occurred_at, received_at=now, payload=s.payload,
                    ingest_batch=batch) for s in rows if s.external_id not in existing]
    if not fresh:
        return []
    # ignore_conflicts: a concurrent delivery of the same id may commit between the check and the
    # insert; the constraint keeps one row and the batch marker tells which rows are ours.
    Signal.objects.bulk_create(fresh, ignore_conflicts=True)
    return list(Signal.objects.filter(source=source, external_id__in=[r.external_id for r in fresh],
                                      ingest_batch=batch).order_by("id").values_list("id", flat=True))


def record_rejections(source: str, rejected: Iterable[tuple[str, str, Any]]) -> int:
    """Keep refused signals (external id, reason, what came) for the admins, bounded in size."""
    rows = [SignalRejection(source=source[:SOURCE_MAX], external_id=str(external_id or "")[:ID_MAX],
                            reason=clean_text(str(reason), 300), excerpt=_excerpt(raw))
            for external_id, reason, raw in rejected]
    if rows:
        SignalRejection.objects.bulk_create(rows)
    return len(rows)


def _excerpt(raw: Any) -> str:
    if isinstance(raw, bytes):
        text = raw[:600].decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw[:600]
    else:
        try:
            text = json.dumps(raw, ensure_ascii=False, default=str)[:600]
        except (TypeError, ValueError, RecursionError):
            text = repr(raw)[:600]
    return clean_text(text, 500)


def prune_signals(days: int | None = None, now: datetime | None = None) -> int:
    """Delete signals (and recorded rejections) older than the retention, in slices so one run
    never holds a long lock. Returns how many signals were deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=days or settings.CXM_SIGNAL_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(Signal.objects.filter(received_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:5000])
        if not ids:
            break
        deleted += Signal.objects.filter(id__in=ids).delete()[0]
    SignalRejection.objects.filter(created_at__lt=cutoff).delete()
    return deleted
