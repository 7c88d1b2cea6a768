"""Routing rules: the schema of their conditions and actions, validation, and evaluation.

A rule is a list of conditions (all must hold) and a dict of actions. Conditions are
`{"field": ..., "op": ..., "value": ...}`; what each field accepts is in CONDITIONS. The facts a
condition reads are gathered once per message into a `Facts` (see responses.routing).

Context conditions read the customer's profile (listening.attributes, listening.location):
their tier, an attribute, their local time (`time_of_day` reads the customer's clock when their
time zone is known, the server's otherwise) and their recent signals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError

from listening.exceptions import PayloadInvalid
from listening.location import customer_zone
from listening.models import AttributeDefinition, Signal
from listening.signal_types import get_type

# field -> allowed ops. "in"/"not_in" take a list of strings; "gte"/"lte" a number; "is" a bool;
# "any" a list of words or term names; "between" {"from": "HH:MM", "to": "HH:MM", "days": [0-6]};
# "at_least" {"count": n, "minutes": m} over the customer's recent negative messages, and for
# "signals" {"type": t, "count": n, "minutes": m} over their signals of that type; "matches" for
# an "attribute": {"key": k} with one or more of "in": [...], "gte": n, "lte": n, "set": bool
# (dates compare as YYYY-MM-DD text).
CONDITIONS: dict[str, set[str]] = {
    "lane": {"in", "not_in"},
    "sentiment": {"in", "not_in"},
    "emotion": {"in", "not_in"},
    "intent": {"in", "not_in"},
    "language": {"in", "not_in"},
    "channel": {"in", "not_in"},
    "connector": {"in", "not_in"},
    "topic": {"any"},
    "keyword": {"any"},
    "priority": {"gte", "lte"},
    "reach": {"gte", "lte"},
    "vip": {"is"},
    "time_of_day": {"between"},
    "recent_negatives": {"at_least"},
    "tier": {"in", "not_in"},
    "attribute": {"matches"},
    "signals": {"at_least"},
}
ACTIONS = {"queue", "team", "priority", "priority_boost", "sla_minutes", "tags", "auto_assign", "acknowledge"}
MAX_CONDITIONS = 20


@dataclass
class Facts:
    """What rules may look at, for one inbound message."""

    lane: str = ""
    sentiment: str = ""
    emotion: str = ""
    intent: str = ""
    language: str = ""
    channel: str = ""
    connector: str = ""  # slug
    topics: list[str] = field(default_factory=list)  # term names, lower-case
    text: str = ""
    priority: float = 0.0
    reach: int = 0
    vip: bool = False
    at: datetime | None = None
    # minutes -> negative messages of this customer within that many minutes (this one included)
    negatives_within: dict[int, int] = field(default_factory=dict)
    tier: str = ""
    # The author's listening Customer (None when not known): attributes, time zone, signals.
    customer: Any = None
    # (signal type, minutes) -> count, filled on first use: only rules that ask pay the query.
    signal_counts: dict[tuple[str, int], int] = field(default_factory=dict)


def validate_rule(conditions: Any, actions: Any) -> None:
    """Raise ValidationError naming what is wrong with a rule."""
    if not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
        raise ValidationError(f"conditions must be a list of at most {MAX_CONDITIONS} objects")
    for i, cond in enumerate(conditions):
        _validate_condition(i, cond)
    if not isinstance(actions, dict):
        raise ValidationError("actions must be an object")
    unknown = set(actions) - ACTIONS
    if unknown:
        raise ValidationError(f"unknown actions: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(ACTIONS))}")
    for key in ("priority", "priority_boost"):
        if key in actions and not _is_number(actions[key]):
            raise ValidationError(f"{key} must be a number")
    if "sla_minutes" in actions and not (isinstance(actions["sla_minutes"], int) and actions["sla_minutes"] > 0):
        raise ValidationError("sla_minutes must be a positive integer")
    if "tags" in actions and not _str_list(actions["tags"]):
        raise ValidationError("tags must be a list of strings")
    if "auto_assign" in actions and not isinstance(actions["auto_assign"], bool):
        raise ValidationError("auto_assign must be true or false")


def _validate_condition(i: int, cond: Any) -> None:
    if not isinstance(cond, dict) or set(cond) - {"field", "op", "value"}:
        raise ValidationError(f"condition {i + 1} must be an object with field, op and value")
    name, op, value = cond.get("field"), cond.get("op"), cond.get("value")
    if name not in CONDITIONS:
        raise ValidationError(f"condition {i + 1}: unknown field {name!r}; allowed: {', '.join(sorted(CONDITIONS))}")
    if op not in CONDITIONS[name]:
        raise ValidationError(f"condition {i + 1}: {name} takes {', '.join(sorted(CONDITIONS[name]))}, not {op!r}")
    if name == "attribute":
        validate_attribute_test(i, value)
        return
    if name == "signals":
        _validate_signals(i, value)
        return
    ok = {
        "in": _str_list, "not_in": _str_list, "any": _str_list, "gte": _is_number, "lte": _is_number,
        "is": lambda v: isinstance(v, bool), "between": _valid_hours, "at_least": _valid_history,
    }[op](value)
    if not ok:
        raise ValidationError(f"condition {i + 1}: bad value for {name} {op}")


def validate_attribute_test(i: int, value: Any) -> None:
    """One attribute test ({"key", and "in", "gte", "lte" or "set"}), as routing conditions and
    segments (responses.segments) write it; ValidationError names test i + 1."""
    tests = {"in", "gte", "lte", "set"}
    if not isinstance(value, dict) or not isinstance(value.get("key"), str) or set(value) - tests - {"key"}:
        raise ValidationError(f"condition {i + 1}: attribute takes {{key, and in, gte, lte or set}}")
    if not set(value) & tests:
        raise ValidationError(f"condition {i + 1}: attribute {value['key'][:40]!r} needs in, gte, lte or set")
    if not AttributeDefinition.objects.filter(key=value["key"]).exists():
        raise ValidationError(f"condition {i + 1}: no attribute with key {value['key'][:40]!r}")
    if "in" in value and not _str_list(value["in"]):
        raise ValidationError(f"condition {i + 1}: attribute in takes a list of text")
    for bound in ("gte", "lte"):
        if bound in value and not (_is_number(value[bound]) or isinstance(value[bound], str)):
            raise ValidationError(f"condition {i + 1}: attribute {bound} takes a number or a date")
    if "set" in value and not isinstance(value["set"], bool):
        raise ValidationError(f"condition {i + 1}: attribute set takes true or false")


def _validate_signals(i: int, value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"type", "count", "minutes"}:
        raise ValidationError(f"condition {i + 1}: signals takes {{type, count, minutes}}")
    try:
        get_type(value["type"])
    except PayloadInvalid as error:
        raise ValidationError(f"condition {i + 1}: {error.reason}") from None
    if not (isinstance(value["count"], int) and not isinstance(value["count"], bool) and 1 <= value["count"] <= 10_000):
        raise ValidationError(f"condition {i + 1}: signals count must be a whole number from 1 to 10000")
    if not (isinstance(value["minutes"], int) and not isinstance(value["minutes"], bool)
            and 1 <= value["minutes"] <= 31 * 24 * 60):
        raise ValidationError(f"condition {i + 1}: signals minutes must be from 1 to {31 * 24 * 60} (31 days)")


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and len(value) <= 200


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid_hours(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    try:
        time.fromisoformat(value["from"])
        time.fromisoformat(value["to"])
    except (KeyError, TypeError, ValueError):
        return False
    days = value.get("days", list(range(7)))
    return isinstance(days, list) and all(isinstance(d, int) and 0 <= d <= 6 for d in days)


def _valid_history(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("count"), int) and value["count"] >= 1
            and isinstance(value.get("minutes"), int) and 1 <= value["minutes"] <= 7 * 24 * 60)


def history_windows(rules) -> set[int]:
    """The history windows (minutes) the given rules ask about, so they are counted once."""
    return {c["value"]["minutes"] for r in rules for c in r.conditions if c.get("field") == "recent_negatives"}


def matches(conditions: list[dict], facts: Facts) -> bool:
    return all(_holds(c, facts) for c in conditions)


def _holds(cond: dict, facts: Facts) -> bool:
    name, op, value = cond["field"], cond["op"], cond["value"]
    if name == "attribute":
        return _attribute_holds(value, facts.customer)
    if name == "signals":
        return _signal_count(facts, value["type"], value["minutes"]) >= value["count"]
    if op in ("in", "not_in"):
        found = str(getattr(facts, name) or "").lower() in {v.lower() for v in value}
        return found if op == "in" else not found
    if op in ("gte", "lte"):
        actual = float(getattr(facts, name) or 0)
        return actual >= value if op == "gte" else actual <= value
    if op == "is":
        return bool(getattr(facts, name)) is value
    if op == "any" and name == "topic":
        return bool({v.lower() for v in value} & set(facts.topics))
    if op == "any":
        return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", facts.text, re.IGNORECASE) for word in value)
    if op == "between":
        return _in_hours(value, facts.at, customer_zone(facts.customer))
    if op == "at_least":
        return facts.negatives_within.get(value["minutes"], 0) >= value["count"]
    return False


def _in_hours(value: dict, at: datetime | None, zone=None) -> bool:
    if at is None:
        return False
    if zone is not None:  # the customer's clock: "9 to 17" is their working day, not the server's
        at = at.astimezone(zone)
    start, end = time.fromisoformat(value["from"]), time.fromisoformat(value["to"])
    if at.weekday() not in value.get("days", range(7)):
        return False
    now = at.time().replace(tzinfo=None)
    return start <= now < end if start <= end else (now >= start or now < end)  # overnight spans


def _attribute_holds(value: dict, customer) -> bool:
    attributes = getattr(customer, "attributes", None) or {}
    actual = attributes.get(value["key"])
    if "set" in value and (actual is not None) is not value["set"]:
        return False
    if "in" in value and str(actual if actual is not None else "").lower() not in {v.lower() for v in value["in"]}:
        return False
    for bound in ("gte", "lte"):
        if bound in value:
            if actual is None or isinstance(actual, str) != isinstance(value[bound], str):
                return False  # a number against a date (or nothing) never matches
            if (actual < value[bound]) if bound == "gte" else (actual > value[bound]):
                return False
    return True


def _signal_count(facts: Facts, kind: str, minutes: int) -> int:
    """The customer's signals of `kind` in the `minutes` before the message, counted once per
    message and key (the index on customer, type, occurred_at answers it)."""
    if facts.customer is None or facts.at is None:
        return 0
    key = (kind, minutes)
    if key not in facts.signal_counts:
        facts.signal_counts[key] = Signal.objects.filter(
            customer_id=facts.customer.pk, type=kind, occurred_at__gt=facts.at - timedelta(minutes=minutes),
            occurred_at__lte=facts.at).count()
    return facts.signal_counts[key]


def apply(rules, facts: Facts) -> tuple[dict, list[str]]:
    """Merge the actions of every matching rule (later rules override earlier ones, tags add up)
    and return them with the names of the rules that matched."""
    merged: dict = {}
    matched: list[str] = []
    for rule in rules:
        if not matches(rule.conditions, facts):
            continue
        matched.append(rule.name)
        for key, value in rule.actions.items():
            if key == "tags":
                merged["tags"] = sorted({*merged.get("tags", []), *value})
            elif key == "priority_boost":
                merged["priority_boost"] = merged.get("priority_boost", 0.0) + value
            else:
                merged[key] = value
        if rule.stop:
            break
    return merged, matched
