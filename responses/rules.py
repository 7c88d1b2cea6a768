"""Routing rules: the schema of their conditions and actions, validation, and evaluation.

A rule is a list of conditions (all must hold) and a dict of actions. Conditions are
`{"field": ..., "op": ..., "value": ...}`; what each field accepts is in CONDITIONS. The facts a
condition reads are gathered once per message into a `Facts` (see responses.routing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from django.core.exceptions import ValidationError

# field -> allowed ops. "in"/"not_in" take a list of strings; "gte"/"lte" a number; "is" a bool;
# "any" a list of words or term names; "between" {"from": "HH:MM", "to": "HH:MM", "days": [0-6]};
# "at_least" {"count": n, "minutes": m} over the customer's recent negative messages.
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
    ok = {
        "in": _str_list, "not_in": _str_list, "any": _str_list, "gte": _is_number, "lte": _is_number,
        "is": lambda v: isinstance(v, bool), "between": _valid_hours, "at_least": _valid_history,
    }[op](value)
    if not ok:
        raise ValidationError(f"condition {i + 1}: bad value for {name} {op}")


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
        return _in_hours(value, facts.at)
    if op == "at_least":
        return facts.negatives_within.get(value["minutes"], 0) >= value["count"]
    return False


def _in_hours(value: dict, at: datetime | None) -> bool:
    if at is None:
        return False
    start, end = time.fromisoformat(value["from"]), time.fromisoformat(value["to"])
    if at.weekday() not in value.get("days", range(7)):
        return False
    now = at.time().replace(tzinfo=None)
    return start <= now < end if start <= end else (now >= start or now < end)  # overnight spans


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
