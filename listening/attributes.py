"""The customer's living profile. Custom attributes: the fields admins add to every customer
("Plan", "Renewal date", "Store"), and the one way their values are set, whoever sets them (the
API, a CSV import, a signal, an agent).

A definition has a key (the name in Customer.attributes, in rule conditions, segments and
`{customer.attr.<key>}` placeholders), a name people read, a kind (text, number, date, choice)
and, for a choice, its choices. A value is checked against its definition before anything is
saved: `set_profile` raises PayloadInvalid naming the first thing wrong, and stores nothing then.
Tier, time zone and preferred channel go through the same call, so every entry point refuses
the same bad input with the same words. What arrives keeps the profile current: mapped signal
fields set attributes, and messages set the learned channel and the last known location.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver

from listening import location
from listening.exceptions import PayloadInvalid
from listening.models import (
    AttributeDefinition,
    AttributeKind,
    AuditEvent,
    Customer,
    CustomerTier,
    Direction,
    Message,
    Signal,
)
from listening.sanitize import clean_text
from listening.signals import RAW_PROFILE_KEYS, messages_ingested, signals_ingested

KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
TEXT_MAX = 500
MAX_CHOICES = 50
MAX_DEFINITIONS = 100
# Fields of the profile that are not custom attributes; a definition may not take their key.
PROFILE_FIELDS = ("tier", "time_zone", "preferred_channel")
IMPORT_MAX_ROWS = 50_000


# --- Definitions ---------------------------------------------------------------------------------


def clean_definition(data: Mapping[str, Any], *, existing: AttributeDefinition | None = None) -> dict[str, Any]:
    """The fields of an AttributeDefinition, checked; PayloadInvalid names what is wrong. A kept
    definition's key and kind do not change: stored values were checked against them."""
    key = existing.key if existing else str(data.get("key") or "").strip()
    if not KEY_RE.fullmatch(key):
        raise PayloadInvalid("key must start with a letter and hold only a-z, 0-9 and _ (at most 40)")
    if key in PROFILE_FIELDS:
        raise PayloadInvalid(f"key {key!r} is a profile field already")
    name = clean_text(str(data.get("name") or ""), 80).strip()
    if not name:
        raise PayloadInvalid("name is required")
    kind = existing.kind if existing else str(data.get("kind") or "")
    if kind not in AttributeKind.values:
        raise PayloadInvalid(f"kind must be one of {', '.join(AttributeKind.values)}")
    choices = data.get("choices") or []
    if isinstance(choices, str):
        choices = [c.strip() for c in choices.split(",") if c.strip()]
    if kind == AttributeKind.CHOICE:
        if (not isinstance(choices, list) or not choices or len(choices) > MAX_CHOICES
                or not all(isinstance(c, str) and 0 < len(c) <= 80 for c in choices)):
            raise PayloadInvalid(f"a choice attribute needs 1 to {MAX_CHOICES} choices of at most 80 characters")
        if len(set(choices)) != len(choices):
            raise PayloadInvalid("choices must not repeat")
    else:
        choices = []
    signal_type = str(data.get("signal_type") or "").strip()
    signal_field = str(data.get("signal_field") or "").strip()
    if bool(signal_type) != bool(signal_field):
        raise PayloadInvalid("a signal mapping needs both the signal type and the payload field")
    if signal_type:
        from listening.signal_types import get_type

        get_type(signal_type)  # PayloadInvalid for an unknown type
        if not re.fullmatch(r"[A-Za-z0-9_]{1,60}", signal_field):
            raise PayloadInvalid("signal_field must be a payload key (letters, digits, _)")
    if not existing and AttributeDefinition.objects.count() >= MAX_DEFINITIONS:
        raise PayloadInvalid(f"at most {MAX_DEFINITIONS} attributes")
    if not existing and AttributeDefinition.objects.filter(key=key).exists():
        raise PayloadInvalid(f"an attribute with key {key!r} exists")
    return {"key": key, "name": name, "kind": kind, "choices": choices, "signal_type": signal_type,
            "signal_field": signal_field}


def save_definition(data: Mapping[str, Any], *, existing: AttributeDefinition | None = None) -> AttributeDefinition:
    """Create or change an attribute definition (admins). A choice removed from a definition is
    left on customers that have it: it still reads, and the next change must pick a valid one."""
    fields = clean_definition(data, existing=existing)
    if existing is None:
        return AttributeDefinition.objects.create(**fields)
    for name, value in fields.items():
        setattr(existing, name, value)
    existing.save()
    return existing


def customers_with_value(key: str) -> int:
    """How many customers hold a value of the attribute (what deleting it would remove)."""
    return Customer.objects.filter(attributes__has_key=key).count()


def delete_definition(definition: AttributeDefinition, *, actor, ip: str | None = None,
                      check: Callable[[str], None] | None = None) -> int:
    """Remove a definition and every customer's value of it, in one transaction, and write the
    audit line (who, when, from where, the definition as it was, how many values went). Returns
    how many customers lost a value. `check(key)` runs with the definition's row locked and may
    raise to refuse: responses.attribute_usage refuses while something still reads the key, and a
    segment being saved meanwhile locks the same row (responses.segments), so none slips between."""
    with transaction.atomic():
        definition = AttributeDefinition.objects.select_for_update().get(pk=definition.pk)
        if check is not None:
            check(definition.key)
        removed = _remove_values(definition.key)
        was = {"key": definition.key, "name": definition.name, "kind": definition.kind,
               "choices": definition.choices, "signal_type": definition.signal_type,
               "signal_field": definition.signal_field}
        definition.delete()
        signed_in = getattr(actor, "pk", None) is not None
        AuditEvent.objects.create(
            actor=actor if signed_in else None, actor_name=actor.get_username() if signed_in else "system",
            action="attribute_deleted", connector=None, connector_label=f"Attribute {was['name']} ({was['key']})"[:200],
            changes={"attribute": was, "values_removed": removed}, ip=ip)
    return removed


def _remove_values(key: str) -> int:
    """Drop `key` from every customer's attributes with one UPDATE (no row read into Python)."""
    from django.db import connection

    table = connection.ops.quote_name(Customer._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = f"UPDATE {table} SET attributes = attributes - %s, updated_at = now() WHERE attributes ? %s"  # noqa: S608
            cursor.execute(sql, [key, key])
        else:  # SQLite's JSON1; the key is [a-z0-9_], checked when the definition was made
            path = f'$."{key}"'
            sql = (f"UPDATE {table} SET attributes = json_remove(attributes, %s), "  # noqa: S608 (the table's name)
                   "updated_at = CURRENT_TIMESTAMP WHERE json_type(attributes, %s) IS NOT NULL")
            cursor.execute(sql, [path, path])
        return cursor.rowcount


def definitions() -> dict[str, AttributeDefinition]:
    return {d.key: d for d in AttributeDefinition.objects.all()}


# --- Values -----------------------------------------------------------------------------------


def clean_value(definition: AttributeDefinition, value: Any) -> Any:
    """A value for `definition` as stored in JSON (None clears it), or PayloadInvalid."""
    where = f"attribute {definition.key}"
    if value is None or value == "":
        return None
    if definition.kind == AttributeKind.NUMBER:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise PayloadInvalid(f"{where} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 1e15:
            raise PayloadInvalid(f"{where} must be a number")
        return int(value) if float(value).is_integer() else float(value)
    if not isinstance(value, str):
        raise PayloadInvalid(f"{where} must be text")
    value = value.strip()
    if definition.kind == AttributeKind.DATE:
        try:
            return date.fromisoformat(value[:10] if len(value) > 10 and value[10] == "T" else value).isoformat()
        except ValueError:
            raise PayloadInvalid(f"{where} must be a date as YYYY-MM-DD") from None
    if definition.kind == AttributeKind.CHOICE:
        if value not in definition.choices:
            raise PayloadInvalid(f"{where} must be one of {', '.join(definition.choices)}")
        return value
    if len(value) > TEXT_MAX or clean_text(value, TEXT_MAX) != value:
        raise PayloadInvalid(f"{where} must be text of at most {TEXT_MAX} characters")
    return value


def clean_profile(changes: Mapping[str, Any], known: dict[str, AttributeDefinition] | None = None) -> dict[str, Any]:
    """Profile changes, checked: {"tier", "time_zone", "preferred_channel", "attributes": {key: value}}.
    Returns the same shape with clean values; PayloadInvalid on the first bad one."""
    if not isinstance(changes, Mapping):
        raise PayloadInvalid("the profile must be an object")
    unknown = set(changes) - {*PROFILE_FIELDS, "attributes"}
    if unknown:
        raise PayloadInvalid(f"unknown profile fields: {', '.join(sorted(map(str, unknown)))[:200]}")
    clean: dict[str, Any] = {}
    if "tier" in changes:
        tier = changes["tier"] or ""
        if tier not in ("", *CustomerTier.values):
            raise PayloadInvalid(f"tier must be one of {', '.join(CustomerTier.values)} (or blank)")
        clean["tier"] = tier
    if "time_zone" in changes:
        clean["time_zone"] = location.clean_time_zone(changes["time_zone"])
    if "preferred_channel" in changes:
        channel = changes["preferred_channel"] or ""
        if channel and channel not in known_channels():
            raise PayloadInvalid(f"preferred_channel must be one of {', '.join(sorted(known_channels()))}")
        clean["preferred_channel"] = channel
    values = changes.get("attributes", {})
    if not isinstance(values, Mapping):
        raise PayloadInvalid("attributes must be an object of key: value")
    if values:
        known = known if known is not None else definitions()
        missing = [str(k) for k in values if k not in known]
        if missing:
            raise PayloadInvalid(f"unknown attributes: {', '.join(sorted(missing))[:200]}")
        clean["attributes"] = {key: clean_value(known[key], value) for key, value in values.items()}
    return clean


def known_channels() -> set[str]:
    from listening.connectors import channel_presentations

    return {c.key for c in channel_presentations()}


def set_profile(customer: Customer, changes: Mapping[str, Any], *, source: str) -> Customer:
    """Apply checked profile changes to one customer (all or nothing). `source` says who set them
    ("api", "import", "agent", "signal"); it is kept for the time zone, whose origin ranks."""
    clean = clean_profile(changes)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        _apply(customer, clean, source)
        customer.save()
    return customer


def _apply(customer: Customer, clean: dict[str, Any], source: str) -> None:
    if "tier" in clean:
        customer.tier = clean["tier"]
    if "time_zone" in clean:
        customer.time_zone = clean["time_zone"]
        customer.time_zone_source = source if clean["time_zone"] else ""
    if "preferred_channel" in clean:
        customer.channel_override = clean["preferred_channel"]
    for key, value in clean.get("attributes", {}).items():
        if value is None:
            customer.attributes.pop(key, None)
        else:
            customer.attributes[key] = value


# --- Import -----------------------------------------------------------------------------------


def import_profiles(text: str) -> dict[str, Any]:
    """A CSV with a header: `email` or `phone` (which customer), then any of tier, time_zone,
    preferred_channel and attribute keys. Rows that name no known customer, or a bad value, are
    reported with their line and reason; the good ones are saved (one transaction per file)."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if not ({"email", "phone"} & set(header)):
        raise PayloadInvalid("the CSV needs an email or phone column")
    known = definitions()
    unknown = [h for h in header if h not in ("email", "phone", *PROFILE_FIELDS) and h not in known]
    if unknown:
        raise PayloadInvalid(f"unknown columns: {', '.join(unknown)[:200]}")
    updated, problems = 0, []
    with transaction.atomic():
        for line, row in enumerate(reader, start=2):
            if line > IMPORT_MAX_ROWS + 1:
                problems.append((line, f"at most {IMPORT_MAX_ROWS} rows"))
                break
            customer = _customer_for_row(row)
            if customer is None:
                problems.append((line, "no customer with this email or phone"))
                continue
            changes: dict[str, Any] = {k: row[k] for k in PROFILE_FIELDS if row.get(k)}
            changes["attributes"] = {k: row[k] for k in known if k in row and row[k] not in (None, "")}
            try:
                _apply(customer, clean_profile(changes, known), "import")
            except PayloadInvalid as error:
                problems.append((line, error.reason))
                continue
            customer.save()
            updated += 1
    return {"updated": updated, "problems": [{"line": n, "reason": r} for n, r in problems[:100]],
            "problem_count": len(problems)}


def _customer_for_row(row: dict[str, str]) -> Customer | None:
    email, phone = (row.get("email") or "").strip(), (row.get("phone") or "").strip()
    if email:
        return Customer.objects.filter(email__iexact=email).order_by("id").first()
    if phone:
        return Customer.objects.filter(phone=phone).order_by("id").first()
    return None


# --- Signals set attributes -------------------------------------------------------------------


def apply_signal_attributes(signal_ids: Iterable[int]) -> int:
    """Set the attributes whose definition maps a signal type's payload field, from the given
    signals in time order (the latest wins). A value that does not fit its attribute is skipped:
    the signal itself was valid, and a device must not be able to break a profile. Returns how
    many customers changed."""
    mapped = [d for d in AttributeDefinition.objects.exclude(signal_type="")]
    if not mapped:
        return 0
    by_type: dict[str, list[AttributeDefinition]] = {}
    for definition in mapped:
        by_type.setdefault(definition.signal_type, []).append(definition)
    changes: dict[int, dict[str, Any]] = {}
    rows = (Signal.objects.filter(pk__in=list(signal_ids), type__in=list(by_type))
            .order_by("occurred_at", "id").values_list("customer_id", "type", "payload"))
    for customer_id, kind, payload in rows:
        for definition in by_type[kind]:
            if isinstance(payload, dict) and definition.signal_field in payload:
                try:
                    value = clean_value(definition, payload[definition.signal_field])
                except PayloadInvalid:
                    continue
                changes.setdefault(customer_id, {})[definition.key] = value
    with transaction.atomic():
        for customer in Customer.objects.select_for_update().filter(pk__in=list(changes)).order_by("pk"):
            _apply(customer, {"attributes": changes[customer.pk]}, "signal")
            customer.save(update_fields=["attributes", "updated_at"])
    return len(changes)


@receiver(signals_ingested, dispatch_uid="listening.attributes.from_signals")
def _on_signals(sender, signal_ids, **kwargs) -> None:
    apply_signal_attributes(signal_ids)


# --- Location and channel, learned from what arrives (listening.location) ---------------------


def record_location(customer: Customer, lat: Any, lon: Any, *, at: datetime, source: str) -> Customer:
    """Set the customer's last known location (checked), unless a newer one is already kept."""
    lat_f, lon_f = location.clean_coordinates(lat, lon)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.location_at and customer.location_at > at:
            return customer
        customer.location_lat, customer.location_lon = lat_f, lon_f
        customer.location_at, customer.location_source = at, source[:40]
        customer.save(update_fields=["location_lat", "location_lon", "location_at", "location_source", "updated_at"])
    return customer


def record_channel_time_zone(customer: Customer, zone: str, *, at: datetime, source: str) -> Customer:
    """Keep the zone a channel told (`source` is "<channel>:<who said it>"), unless a newer message
    told one already. It ranks below a zone set by a person (listening.location.customer_zone)."""
    zone = location.clean_time_zone(zone)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.channel_time_zone_at and customer.channel_time_zone_at > at:
            return customer
        if (customer.channel_time_zone, customer.channel_time_zone_source) == (zone, source[:60]):
            if customer.channel_time_zone_at != at:
                Customer.objects.filter(pk=customer.pk).update(channel_time_zone_at=at)
            return customer
        customer.channel_time_zone, customer.channel_time_zone_source = zone, source[:60]
        customer.channel_time_zone_at = at
        customer.save(update_fields=["channel_time_zone", "channel_time_zone_source", "channel_time_zone_at",
                                     "updated_at"])
    return customer


def learn_from_messages(message_ids: Iterable[int], profile: Iterable[tuple] | None = None) -> None:
    """Keep each writing customer's channel, last shared location and channel-told time zone
    current. Without `profile`, reads two narrow queries (no raw payload decoded except for
    messages that carry a location or a time zone). Ingestion passes `profile`, what it knew as it
    stored the messages (listening.actions.IngestResult.profile: message id, the author's customer
    id, channel, sent_at, whether the raw has a RAW_PROFILE_KEYS key): then no read at all unless a
    customer's channel changes or a message carries such a key, which most deliveries do not."""
    ids = list(message_ids)
    inbound = Message.objects.filter(pk__in=ids, direction=Direction.INBOUND, author__isnull=False)
    newest: dict[int, tuple[datetime, str]] = {}
    if profile is None:
        customers = inbound.filter(author__customer__isnull=False).values_list(
            "author__customer_id", "channel", "sent_at")
        told_ids = None
    else:
        facts = list(profile)
        customers = [(customer_id, channel, sent_at) for _, customer_id, channel, sent_at, _ in facts
                     if customer_id is not None]
        told_ids = [message_id for message_id, *_, told in facts if told]
    for customer_id, channel, sent_at in customers:
        if customer_id not in newest or sent_at >= newest[customer_id][0]:
            newest[customer_id] = (sent_at, channel)
    by_channel: dict[str, list[int]] = {}
    for customer_id, (_, channel) in newest.items():
        by_channel.setdefault(channel, []).append(customer_id)
    for channel, customer_ids in by_channel.items():
        Customer.objects.filter(pk__in=customer_ids).exclude(learned_channel=channel).update(learned_channel=channel)
    # One query for both: only messages whose connector put a location or a time zone on the raw.
    if told_ids == []:
        return
    told = inbound.filter(Q(*[Q(raw__has_key=key) for key in RAW_PROFILE_KEYS], _connector=Q.OR))
    if told_ids is not None:
        told = told.filter(pk__in=told_ids)
    for message in told.select_related("author__customer", "connector").order_by("sent_at", "id"):
        found, zone = location.message_location(message), location.message_time_zone(message)
        if found is None and zone is None:
            continue
        customer = message.author.customer
        if customer is None:
            from listening.actions import match_customer

            # A location is profile data: the contact gets a customer of its own (never merged
            # with anyone through the unverified number it may carry).
            customer = match_customer(message.author)
        if found is not None:
            customer = record_location(customer, *found, at=message.sent_at, source=message.channel)
        if zone is not None:
            record_channel_time_zone(customer, zone[0], at=message.sent_at, source=f"{message.channel}:{zone[1]}")


@receiver(messages_ingested, dispatch_uid="listening.location.learn")
def _on_messages(sender, message_ids, profile=None, **kwargs) -> None:
    learn_from_messages(message_ids, profile)
