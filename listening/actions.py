"""Ingestion: the one way messages from any connector are stored.

`ingest_messages` dedupes on (connector, external_id) with a database constraint, threads each
message into a Conversation, keeps Contacts current and, on commit, announces the new message ids
with `listening.signals.messages_ingested` for the learning app.
"""

from __future__ import annotations

import logging
import operator
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from listening import ingest_sql, times
from listening.attachments import store_attachments
from listening.connectors.base import InboundAuthor, InboundMessage
from listening.exceptions import PayloadInvalid
from listening.models import Connector, Contact, Conversation, Customer, Direction, Message
from listening.sanitize import clean_text
from listening.signals import RAW_PROFILE_KEYS, messages_ingested

logger = logging.getLogger(__name__)

EXTERNAL_ID_MAX = 255
CHUNK = 500  # keeps IN (...) lists well under SQLite's parameter limit
# PostgreSQL takes 65,535 parameters: an import batch of 1,000 rows is one chunk, not two, and
# pays the per-chunk statements (lookups, COPY staging, counters) once.
CHUNK_POSTGRESQL = 2000


@dataclass
class IngestResult:
    created_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    # What the profile receiver (listening.attributes.learn_from_messages) would otherwise read
    # back after the commit: (message id, author's customer id or None, channel, sent_at, whether
    # the raw carries a profile key), for inbound messages with a customer or such a key only.
    profile: list[tuple[int, int | None, str, datetime, bool]] = field(default_factory=list)

    @property
    def created(self) -> int:
        return len(self.created_ids)

    def merge(self, other: IngestResult) -> None:
        self.created_ids.extend(other.created_ids)
        self.duplicates += other.duplicates
        self.profile.extend(other.profile)


def ingest_messages(connector: Connector, messages: Iterable[InboundMessage]) -> IngestResult:
    """Store normalised inbound messages exactly once.

    Messages already stored for this connector (or repeated within the call) count as
    duplicates. Safe to call concurrently with overlapping messages: the unique constraint on
    (connector, external_id) decides, and each message is announced by exactly one caller.
    Raises PayloadInvalid if a message cannot be stored as given (for example an id too long)."""
    unique = _dedupe_and_validate(messages)
    result = IngestResult(duplicates=unique.duplicates)
    if not unique.messages:
        ingest_sql.count_on_connector(connector, result)
        return result
    with transaction.atomic():
        tallies = ingest_sql.Tallies()
        size = CHUNK_POSTGRESQL if connection.vendor == "postgresql" else CHUNK
        for start in range(0, len(unique.messages), size):
            result.merge(_ingest_chunk(connector, unique.messages[start : start + size], tallies))
        tallies.write(connector, result)
        if result.created_ids:
            ids, connector_id, profile = list(result.created_ids), connector.pk, list(result.profile)
            transaction.on_commit(lambda: _announce(ids, connector_id, profile))
    return result


def validate_messages(messages: Iterable[InboundMessage]) -> None:
    """Raise PayloadInvalid (or the parser-shape errors the webhook maps to it) for what
    ingest_messages would refuse before writing."""
    _dedupe_and_validate(messages)


def ingest_deliveries(deliveries: Sequence[tuple[Connector, Sequence[InboundMessage]]]) -> list[IngestResult]:
    """Several deliveries' messages stored in ONE transaction (listening.group_commit): one set of
    lookups and inserts per connector and one commit, where ingest_messages per delivery pays
    them all each time. Returns one IngestResult per delivery, in order: a message counts as
    created for the first delivery in the list that carried it, and as a duplicate anywhere else
    (stored before, repeated within a delivery, or carried by an earlier delivery of the batch),
    so each delivery gets the answer ingest_messages would have given it in that order.
    Raises whatever a statement raises, having stored nothing: the caller then stores each
    delivery on its own, so one delivery's bad item does not cost the others."""
    results = [IngestResult() for _ in deliveries]
    by_connector: dict[int, list[int]] = defaultdict(list)
    for i, (connector, _) in enumerate(deliveries):
        by_connector[connector.pk].append(i)
    size = CHUNK_POSTGRESQL if connection.vendor == "postgresql" else CHUNK
    with transaction.atomic():
        # Connectors in id order, each batch's rows sorted as in ingest_messages: concurrent group
        # commits take their locks in the same order.
        for connector_id in sorted(by_connector):
            indexes = by_connector[connector_id]
            connector = deliveries[indexes[0]][0]
            unique = _dedupe_and_validate(m for i in indexes for m in deliveries[i][1])
            group = IngestResult(duplicates=unique.duplicates)
            tallies = ingest_sql.Tallies()
            for start in range(0, len(unique.messages), size):
                group.merge(_ingest_chunk(connector, unique.messages[start : start + size], tallies))
            tallies.write(connector, group)  # the connector's tally alone when nothing was new
            created = {row[1]: row[0] for row in tallies.created}  # external id -> message id
            facts = {row[0]: row for row in group.profile}
            for i in indexes:
                result = results[i]
                for message in deliveries[i][1]:
                    message_id = created.pop(message.external_id, None)
                    if message_id is None:
                        result.duplicates += 1
                        continue
                    result.created_ids.append(message_id)
                    if message_id in facts:
                        result.profile.append(facts[message_id])
            if group.created_ids:
                # One announcement per connector for the whole batch: classification gets the
                # batch's ids in one task, as for a batched delivery.
                ids, profile = list(group.created_ids), list(group.profile)
                transaction.on_commit(lambda ids=ids, pk=connector_id, profile=profile: _announce(ids, pk, profile))
    return results


def _announce(ids: list[int], connector_id: int, profile: list[tuple] | None = None) -> None:
    """Tell receivers (classification) about stored messages. The messages are committed, so a
    receiver's failure (say, the broker is down) is logged, not raised into the delivery: the
    learning app's periodic sweep picks up whatever was not enqueued. `profile` carries what
    ingestion knew of each message's author (IngestResult.profile), so the profile receiver does
    not read it back."""
    for receiver, outcome in messages_ingested.send_robust(sender=Message, message_ids=ids, connector_id=connector_id,
                                                           profile=profile):
        if isinstance(outcome, Exception):
            logger.error("messages_ingested receiver %r failed: %r", receiver, outcome, exc_info=outcome)


@dataclass
class _Unique:
    messages: list[InboundMessage]
    duplicates: int


def _dedupe_and_validate(messages: Iterable[InboundMessage]) -> _Unique:
    seen: set[str] = set()
    kept: list[InboundMessage] = []
    duplicates = 0
    for message in messages:
        external_id = message.external_id
        _check_id(external_id, "message id")
        _check_id(message.author.external_id, f"author id of message {external_id[:40]!r}")
        _check_id(message.thread_id, f"thread id of message {external_id[:40]!r}", optional=True)
        _check_id(message.parent_external_id, f"parent id of message {external_id[:40]!r}", optional=True)
        if external_id in seen:
            duplicates += 1
            continue
        seen.add(external_id)
        kept.append(_timed(message))
    # Oldest first, so a parent in the same batch is threaded before its replies.
    kept.sort(key=lambda m: _aware(m.sent_at))
    return _Unique(kept, duplicates)


def _timed(message: InboundMessage) -> InboundMessage:
    """The message with its send time in UTC. A time that cannot be a send time (see
    listening.times; parsers already give an OutOfRange, this catches any connector that did
    not) becomes the received time, and the raw payload keeps what the source said and why."""
    sent_at = times.source_time(message.sent_at)
    if not isinstance(sent_at, times.OutOfRange):
        return message if sent_at is message.sent_at else replace(message, sent_at=sent_at)
    raw = message.raw if isinstance(message.raw, dict) else {"payload": message.raw}
    marks = raw.get("_cxm") if isinstance(raw.get("_cxm"), dict) else {}
    flagged = {**raw, "_cxm": {**marks, "sent_at_invalid": times.describe(sent_at),
                               "sent_at_reason": getattr(sent_at, "reason", "")}}
    plain = datetime.combine(sent_at.date(), sent_at.timetz())  # a plain datetime, no longer an OutOfRange
    return replace(message, sent_at=plain, raw=flagged)


def _check_id(value: str, what: str, *, optional: bool = False) -> None:
    """Ids are stored in indexed columns and compared exactly: refuse what PostgreSQL cannot store
    (NUL, lone surrogates) instead of silently changing the id."""
    if not value and optional:
        return
    if not value or len(value) > EXTERNAL_ID_MAX:
        raise PayloadInvalid(f"{what} must be 1 to {EXTERNAL_ID_MAX} characters, got {len(value)}")
    if clean_text(value) != value:  # clean_text drops NUL and replaces lone surrogates
        raise PayloadInvalid(f"{what} contains a NUL or an invalid character")


# The Message columns _ingest_chunk fills; any other (a field added later) gets its default.
INGEST_SETS = frozenset({
    "connector_id", "external_id", "channel", "direction", "conversation_id", "author_id", "text", "url",
    "sent_at", "received_at", "parent_id", "parent_external_id", "raw", "raw_truncated", "ingest_batch",
})


def _ingest_chunk(connector: Connector, chunk: Sequence[InboundMessage], tallies: ingest_sql.Tallies) -> IngestResult:
    existing = set(
        Message.objects.filter(
            connector=connector, **{ingest_sql.in_lookup(): [m.external_id for m in chunk]}
        ).values_list("external_id", flat=True)
    )
    fresh = [m for m in chunk if m.external_id not in existing]
    result = IngestResult(duplicates=len(chunk) - len(fresh))
    if not fresh:
        return result
    contact_ids, customer_ids = _upsert_contacts(fresh)
    parents = _known_parents(connector, fresh)
    thread_keys = _thread_keys(fresh, parents)
    conversation_ids = _upsert_conversations(connector, fresh, thread_keys, contact_ids)

    batch = uuid.uuid4()
    now = timezone.now()
    # Rows as tuples in message_columns() order, not Message instances: a model instance per row was
    # the largest Python cost of a file import, and COPY and INSERT ... RETURNING take tuples.
    names = ingest_sql.message_columns()[1]
    # Once per chunk: a later field's default must not be one that differs per row (a uuid4).
    unset = {name: ingest_sql.column_default(name) for name in names if name not in INGEST_SETS}
    text_max = settings.MESSAGE_TEXT_MAX_CHARS
    row_of = operator.itemgetter(*names)  # the dict below, in column order, in C
    rows = []
    learned: dict[str, tuple[int | None, str, bool]] = {}  # external id -> profile facts (IngestResult.profile)
    for message in fresh:
        raw, truncated = ingest_sql.capped(message.raw)
        inbound = message.direction != "out"
        if inbound:
            author_key = (message.channel, message.author.external_id)
            told = isinstance(raw, dict) and any(key in raw for key in RAW_PROFILE_KEYS)
            customer_id = customer_ids.get(author_key)
            if customer_id is not None or told:
                learned[message.external_id] = (customer_id, message.channel, told)
        parent = parents.get(message.parent_external_id)
        values = {
            "connector_id": connector.pk,
            "external_id": message.external_id,
            "channel": message.channel,
            "direction": Direction.INBOUND if inbound else Direction.OUTBOUND,
            "conversation_id": conversation_ids[thread_keys[message.external_id]],
            "author_id": contact_ids[(message.channel, message.author.external_id)],
            "text": clean_text(message.text, text_max),
            "url": _short(message.url, 1000),
            "sent_at": _aware(message.sent_at),
            "received_at": now,
            "parent_id": parent[0] if parent else None,
            "parent_external_id": message.parent_external_id,
            "raw": raw,
            "raw_truncated": truncated,
            "ingest_batch": batch,
        }
        if unset:
            values.update(unset)
        rows.append(row_of(values))
    at = names.index("external_id")
    rows.sort(key=lambda row: row[at])
    if connection.vendor == "postgresql" and len(rows) >= ingest_sql.COPY_MIN_ROWS:
        created = ingest_sql.copy_insert(rows)
    elif connection.vendor == "postgresql":
        created = ingest_sql.insert_returning(rows)
    else:
        # ignore_conflicts: a concurrent delivery of the same message may commit between our
        # existence check and this insert; the constraint keeps one row and we skip ours.
        Message.objects.bulk_create([Message(**dict(zip(names, row, strict=True))) for row in rows],
                                    ignore_conflicts=True)
        # Looked up through the (connector, external_id) index; the batch marker tells our rows apart.
        created = list(
            Message.objects.filter(
                connector=connector, external_id__in=[row[at] for row in rows], ingest_batch=batch
            ).values_list("id", "external_id", "conversation_id", "author_id", "sent_at")
        )
    result.created_ids = [row[0] for row in created]
    for row in created:  # (id, external_id, conversation_id, author_id, sent_at)
        facts = learned.get(row[1])
        if facts is not None:
            result.profile.append((row[0], facts[0], facts[1], row[4], facts[2]))
    result.duplicates += len(rows) - len(created)
    store_attachments(fresh, created)
    tallies.add(created)
    if connection.vendor != "postgresql":  # PostgreSQL links them with the counters, in one statement
        _link_parents(connector, created)
    return result


def _upsert_contacts(
    messages: Sequence[InboundMessage],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """Create missing contacts, refresh changed profile fields; return (channel, id) -> pk, and
    (channel, id) -> customer pk for the contacts that have a customer."""
    latest: dict[tuple[str, str], tuple[InboundAuthor, datetime]] = {}
    for message in messages:
        latest[(message.channel, message.author.external_id)] = (message.author, _aware(message.sent_at))
    existing = _contacts_by_key(latest)
    # Sorted, like every multi-row write here: concurrent batches then take row and index locks
    # in the same order and wait for each other instead of deadlocking.
    missing = sorted(key for key in latest if key not in existing)
    fresh: set[tuple[str, str]] = set()
    if missing:
        # The no-op update (channel to itself) makes PostgreSQL and SQLite return the id of a row
        # a concurrent delivery inserted first, as well as ours: no second SELECT.
        built = {key: _new_contact(key, *latest[key]) for key in missing}
        for contact in ingest_sql.insert_or_get(list(built.values()), ["channel", "external_id"]):
            key = (contact.channel, contact.external_id)
            existing[key] = contact
            if contact is built[key]:  # ours; a concurrent delivery's row is refreshed like any other
                fresh.add(key)
    changed = []
    for key, contact in existing.items():
        if key not in fresh and _refresh_contact(contact, latest[key][0]):
            changed.append(contact)
    if changed:
        Contact.objects.bulk_update(sorted(changed, key=lambda contact: contact.pk), PROFILE_FIELDS)
    verified = [c for c in existing.values() if (c.email_verified and c.email) or (c.phone_verified and c.phone)]
    for contact in verified:
        if contact.customer_id is None:
            match_customer(contact)
    return ({key: contact.pk for key, contact in existing.items()},
            {key: contact.customer_id for key, contact in existing.items() if contact.customer_id is not None})


PROFILE_FIELDS = [
    "handle", "display_name", "profile_url", "followers",
    "email", "email_verified", "phone", "phone_verified",
]


def _contacts_by_key(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Contact]:
    by_channel: dict[str, list[str]] = defaultdict(list)
    for channel, external_id in keys:
        by_channel[channel].append(external_id)
    query = Q()
    for channel, ids in by_channel.items():
        query |= Q(channel=channel, **{ingest_sql.in_lookup(): ids})
    return {(c.channel, c.external_id): c for c in Contact.objects.filter(query)}


def _author_fields(author: InboundAuthor) -> dict[str, Any]:
    followers = author.followers
    if followers is not None and not 0 <= followers < 2**62:
        followers = None
    return {
        "handle": _short(author.handle, 255),
        "display_name": _short(author.display_name, 255),
        "profile_url": _short(author.profile_url, 500),
        "followers": followers,
        "email": _short(author.email, 254),
        "email_verified": author.email_verified and bool(author.email),
        "phone": _short(author.phone, 32),
        "phone_verified": author.phone_verified and bool(author.phone),
    }


def _new_contact(key: tuple[str, str], author: InboundAuthor, seen_at: datetime) -> Contact:
    return Contact(
        channel=key[0], external_id=key[1], first_seen_at=seen_at, last_seen_at=seen_at,
        **_author_fields(author),
    )


def _refresh_contact(contact: Contact, author: InboundAuthor) -> bool:
    """Apply what the source now says about the author; blank values never erase known ones."""
    changed = False
    for name, value in _author_fields(author).items():
        if value in ("", None, False) or getattr(contact, name) == value:
            continue
        setattr(contact, name, value)
        changed = True
    return changed


def _known_parents(connector: Connector, messages: Sequence[InboundMessage]) -> dict[str, tuple[int, str]]:
    """Stored parents of these messages: parent external id -> (pk, conversation external id)."""
    wanted = {m.parent_external_id for m in messages if m.parent_external_id}
    if not wanted:
        return {}
    rows = Message.objects.filter(connector=connector, **{ingest_sql.in_lookup(): list(wanted)}).values_list(
        "external_id", "id", "conversation__external_id"
    )
    return {external_id: (pk, thread) for external_id, pk, thread in rows}


def _thread_keys(
    messages: Sequence[InboundMessage], parents: dict[str, tuple[int, str]]
) -> dict[str, str]:
    """Conversation key per message: the source's thread id, else the parent's thread (stored or
    earlier in this batch), else the message starts its own thread."""
    keys: dict[str, str] = {}
    for message in messages:
        if message.thread_id:
            key = message.thread_id
        elif message.parent_external_id in parents:
            key = parents[message.parent_external_id][1]
        elif message.parent_external_id in keys:
            key = keys[message.parent_external_id]
        else:
            key = message.external_id
        keys[message.external_id] = key
    return keys


def _upsert_conversations(
    connector: Connector,
    messages: Sequence[InboundMessage],
    thread_keys: dict[str, str],
    contact_ids: dict[tuple[str, str], int],
) -> dict[str, int]:
    """Create missing conversations; return thread key -> pk. A conversation's customer is the
    author of its first inbound message, filled in later if it began with our own (an echo)."""
    first: dict[str, InboundMessage] = {}
    customer: dict[str, int] = {}
    for message in messages:
        key = thread_keys[message.external_id]
        first.setdefault(key, message)
        if message.direction != "out":
            customer.setdefault(key, contact_ids[(message.channel, message.author.external_id)])
    existing = _conversations_by_key(connector, first)
    missing = sorted(key for key in first if key not in existing)
    if missing:
        # As for contacts: the ids come back from the insert, ours or a concurrent delivery's.
        created = ingest_sql.insert_or_get(
            [
                Conversation(
                    connector=connector,
                    channel=first[key].channel,
                    external_id=key,
                    subject=_short(first[key].subject, 300),
                    contact_id=customer.get(key),
                    started_at=_aware(first[key].sent_at),
                    last_message_at=_aware(first[key].sent_at),
                )
                for key in missing
            ],
            ["connector_id", "external_id"],
        )
        existing.update({row.external_id: (row.pk, row.contact_id) for row in created})
    for key, (pk, contact_id) in existing.items():
        if contact_id is None and key in customer:
            Conversation.objects.filter(pk=pk, contact__isnull=True).update(contact_id=customer[key])
    return {key: pk for key, (pk, _) in existing.items()}


def _conversations_by_key(connector: Connector, keys: Iterable[str]) -> dict[str, tuple[int, int | None]]:
    rows = Conversation.objects.filter(connector=connector, **{ingest_sql.in_lookup(): list(keys)}).values_list(
        "external_id", "id", "contact_id"
    )
    return {key: (pk, contact_id) for key, pk, contact_id in rows}


def _link_parents(connector: Connector, created: list[tuple]) -> None:
    """Point replies at parents that arrived in the same call or after the reply."""
    new_ids = {row[1]: row[0] for row in created}
    orphans = list(
        Message.objects.filter(
            connector=connector, parent__isnull=True, parent_external_id__in=list(new_ids)
        )
        .exclude(parent_external_id="")  # the predicate of the partial index message_orphan_reply_idx
        .values_list("id", "parent_external_id")
    )
    if orphans:
        Message.objects.filter(id__in=[pk for pk, _ in orphans]).update(
            parent_id=Case(*[When(id=pk, then=Value(new_ids[parent])) for pk, parent in orphans])
        )


def match_customer(contact: Contact) -> Customer:
    """Attach a contact to the Customer sharing its verified email or phone, creating one if
    none does. Unverified identifiers never merge people: anyone can type any email."""
    query = Q()
    if contact.email_verified and contact.email:
        query |= Q(email__iexact=contact.email)
    if contact.phone_verified and contact.phone:
        query |= Q(phone=contact.phone)
    customer = Customer.objects.filter(query).order_by("id").first() if query else None
    if customer is None:
        customer = Customer.objects.create(
            display_name=contact.display_name or contact.handle,
            email=contact.email if contact.email_verified else "",
            phone=contact.phone if contact.phone_verified else "",
        )
    contact.customer = customer
    Contact.objects.filter(pk=contact.pk).update(customer=customer)
    return customer


@transaction.atomic
def merge_customers(target: Customer, *others: Customer) -> Customer:
    """Fold `others` into `target`: their contacts move over, blanks on target are filled, and
    the others are deleted. Used when an agent confirms two profiles are one person."""
    for other in others:
        if other.pk == target.pk:
            continue
        Contact.objects.filter(customer=other).update(customer=target)
        for name in ("display_name", "email", "phone"):
            if not getattr(target, name) and getattr(other, name):
                setattr(target, name, getattr(other, name))
        other.delete()
    target.save()
    return target


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _short(value: str, limit: int) -> str:
    return clean_text(value, limit)
