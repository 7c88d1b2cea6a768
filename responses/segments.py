"""Segments: saved filters over customers' tier, attributes and signals, with their counts
("premium customers with 3+ device errors this week").

A definition is a JSON object; every part present must hold (and):

    {"tier": ["premium", "business"],
     "attributes": [{"key": "plan", "in": ["gold"]}, {"key": "renewal", "lte": "2027-01-31"}],
     "signals": [{"type": "device_error", "count": 3, "days": 7}],
     "tags": ["device-trouble"]}

Attribute tests are the routing rules' (`in`, `gte`, `lte`, `set`); a signal test counts the
customer's signals of the type in the last `days`. `customers(definition)` is one query (the
signal tests are grouped subqueries on the (customer, type, occurred_at) index), so a count is
one SELECT COUNT whatever the number of customers. Admins and managers keep segments; the
dashboards compare a segment's sentiment with everyone's (insight.panels.segment_sentiment).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from listening.exceptions import PayloadInvalid
from listening.models import AttributeDefinition, Contact, Customer, CustomerTag, CustomerTier, Segment, Signal
from listening.signal_types import get_type
from responses import access
from responses.exceptions import InvalidRequest, NotAllowed
from responses.models import Role
from responses.rules import validate_attribute_test

PARTS = {"tier", "attributes", "signals", "tags"}
SEGMENT_ROLES = {Role.ADMIN, Role.BRAND_MANAGER}
MAX_TESTS = 10


def clean_definition(definition: Any) -> dict[str, Any]:
    """The definition, checked; InvalidRequest (400) names the first thing wrong. An empty one is
    refused: a segment of everyone is the dashboards' "everyone" already."""
    if not isinstance(definition, dict):
        raise InvalidRequest("a segment's definition must be an object")
    unknown = set(definition) - PARTS
    if unknown:
        allowed = ", ".join(sorted(PARTS))
        raise InvalidRequest(f"unknown parts: {', '.join(sorted(map(str, unknown)))}; allowed: {allowed}")
    clean: dict[str, Any] = {}
    tiers = definition.get("tier") or []
    if not isinstance(tiers, list) or not all(t in CustomerTier.values for t in tiers):
        raise InvalidRequest(f"tier must be a list of {', '.join(CustomerTier.values)}")
    if tiers:
        clean["tier"] = sorted(set(tiers))
    tests = definition.get("attributes") or []
    if not isinstance(tests, list) or len(tests) > MAX_TESTS:
        raise InvalidRequest(f"attributes must be a list of at most {MAX_TESTS} tests")
    for i, test in enumerate(tests):
        try:
            validate_attribute_test(i, test)
        except ValidationError as error:
            raise InvalidRequest("attribute test " + error.messages[0].removeprefix("condition ")) from None
    if tests:
        clean["attributes"] = tests
    signals = definition.get("signals") or []
    if not isinstance(signals, list) or len(signals) > MAX_TESTS:
        raise InvalidRequest(f"signals must be a list of at most {MAX_TESTS} tests")
    for i, test in enumerate(signals, start=1):
        _check_signal_test(i, test)
    if signals:
        clean["signals"] = signals
    tags = definition.get("tags") or []
    if not isinstance(tags, list) or len(tags) > MAX_TESTS or not all(isinstance(t, str) and 0 < len(t) <= 40
                                                                      for t in tags):
        raise InvalidRequest("tags must be a list of words (at most 40 characters)")
    if tags:
        clean["tags"] = tags
    if not clean:
        raise InvalidRequest("a segment needs at least one test (tier, an attribute, signals or a tag)")
    return clean


def _check_signal_test(i: int, test: Any) -> None:
    if not isinstance(test, dict) or set(test) != {"type", "count", "days"}:
        raise InvalidRequest(f"signal test {i} takes type, count and days")
    try:
        get_type(test["type"])
    except PayloadInvalid as error:
        raise InvalidRequest(f"signal test {i}: {error.reason}") from None
    for name, top in (("count", 100_000), ("days", settings.CXM_SIGNAL_RETENTION_DAYS)):
        value = test[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise InvalidRequest(f"signal test {i}: {name} must be a whole number from 1 to {top}")


def customers(definition: dict[str, Any], *, now=None) -> QuerySet[Customer]:
    """The customers a (clean) definition selects, as one query."""
    now = now or timezone.now()
    query = Customer.objects.all()
    if definition.get("tier"):
        query = query.filter(tier__in=definition["tier"])
    for test in definition.get("attributes", []):
        query = query.filter(_attribute_q(test))
    for test in definition.get("signals", []):
        counted = (Signal.objects.filter(type=test["type"], occurred_at__gt=now - timedelta(days=test["days"]))
                   .order_by().values("customer_id").annotate(n=Count("id")).filter(n__gte=test["count"])
                   .values("customer_id"))
        query = query.filter(pk__in=counted)
    for tag in definition.get("tags", []):
        query = query.filter(pk__in=CustomerTag.objects.filter(name=tag).values("customer_id"))
    return query


def _attribute_q(test: dict[str, Any]) -> Q:
    key = test["key"]
    q = Q()
    if "set" in test:
        q &= Q(**{"attributes__has_key": key}) if test["set"] else ~Q(**{"attributes__has_key": key})
    if "in" in test:
        q &= Q(**{f"attributes__{key}__in": test["in"]})
    for bound in ("gte", "lte"):
        if bound in test:
            q &= Q(**{f"attributes__{key}__{bound}": test[bound]})
    return q


def visible_customers(user) -> QuerySet[Customer]:
    """Every customer for an admin; for a brand manager, those who wrote on their teams' sources,
    so a count never tells them about another team's customers."""
    if access.role_of(user) == Role.ADMIN:
        return Customer.objects.all()
    contacts = Contact.objects.filter(conversations__connector_id__in=access.connector_ids(user),
                                      customer__isnull=False)
    return Customer.objects.filter(pk__in=contacts.values("customer_id"))


def count_for(user, segment: Segment) -> int:
    """How many customers the user may see are in the segment: one COUNT query."""
    return count_definition(user, segment.definition)


def count_definition(user, definition: dict[str, Any]) -> int:
    """How many customers the user may see a (clean) definition selects now: one COUNT query."""
    query = customers(definition)
    if access.role_of(user) != Role.ADMIN:
        query = query.filter(pk__in=visible_customers(user).values("pk"))
    return query.count()


def describe(definition: dict[str, Any]) -> str:
    """The definition in words, for the list page."""
    names = dict(AttributeDefinition.objects.values_list("key", "name"))
    parts = []
    if definition.get("tier"):
        labels = dict(CustomerTier.choices)
        parts.append("tier " + " or ".join(labels.get(t, t) for t in definition["tier"]))
    for test in definition.get("attributes", []):
        name = names.get(test["key"], test["key"])
        if "in" in test:
            parts.append(f"{name} is {' or '.join(map(str, test['in']))}")
        if "gte" in test:
            parts.append(f"{name} at least {test['gte']}")
        if "lte" in test:
            parts.append(f"{name} at most {test['lte']}")
        if "set" in test:
            parts.append(f"{name} {'set' if test['set'] else 'not set'}")
    for test in definition.get("signals", []):
        label = get_type(test["type"]).label
        parts.append(f"{test['count']}+ {label.lower()} in {test['days']} day{'s' if test['days'] != 1 else ''}")
    for tag in definition.get("tags", []):
        parts.append(f"tagged {tag}")
    return "; ".join(parts)


# --- Actions ----------------------------------------------------------------------------------


def require_segment_user(user) -> None:
    """Admins and managers keep segments: they are about all customers, not one team's queue."""
    if access.role_of(user) not in SEGMENT_ROLES:
        raise NotAllowed("segments are kept by admins and brand managers")


def save_segment(user, name: str, definition: Any, *, segment: Segment | None = None) -> Segment:
    require_segment_user(user)
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise InvalidRequest("a segment needs a name of at most 120 characters")
    with transaction.atomic():
        # The attributes it tests are locked until it is saved: deleting one of them
        # (listening.attributes.delete_definition) waits, then sees this segment and refuses.
        if isinstance(definition, dict) and isinstance(definition.get("attributes"), list):
            keys = [t["key"] for t in definition["attributes"] if isinstance(t, dict) and isinstance(t.get("key"), str)]
            list(AttributeDefinition.objects.select_for_update().filter(key__in=keys[:MAX_TESTS]).order_by("pk"))
        return _save(user, name, definition, segment)


def _save(user, name: str, definition: Any, segment: Segment | None) -> Segment:
    clean = clean_definition(definition)
    if Segment.objects.filter(name=name).exclude(pk=segment.pk if segment else None).exists():
        raise InvalidRequest(f"a segment named {name!r} exists")
    if segment is None:
        return Segment.objects.create(name=name, definition=clean, created_by=user)
    segment.name, segment.definition = name, clean
    segment.save()
    return segment


def delete_segment(user, segment: Segment) -> None:
    require_segment_user(user)
    segment.delete()
