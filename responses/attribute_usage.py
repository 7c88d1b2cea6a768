"""What still reads a custom attribute, so that deleting its definition can be refused with the list.

An attribute's key is read by segments (their attribute tests), routing rules (`attribute`
conditions), and text that reaches customers: canned replies, macros' reply steps and signal
rules' proactive template values (`{customer.attr.<key>}`). Deleting the definition under any of
them would change what they do without anyone deciding it:

- a routing rule's `{"key": "plan", "set": false}` would start matching everyone, and an `in` test
  would stop matching anyone; dropping the condition instead would widen the rule;
- a segment would count other customers on the dashboards;
- a placeholder whose key is unknown stays as typed, so customers would read "{customer.attr.plan}".

So the console and the admin's JSON refuse the deletion while anything reads the key, and name
each reader with a link; the admin edits or removes them and deletes again. Values on customers
are not such a reference: they go with the definition (the confirmation says how many).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.urls import reverse

from listening.models import Segment
from responses.exceptions import Conflict
from responses.models import CannedResponse, Macro, RoutingRule, SignalRule


@dataclass(frozen=True)
class Reference:
    kind: str  # in words: "Segment", "Routing rule", ...
    name: str
    url: str  # where an admin changes it

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "url": self.url}


def placeholder(key: str) -> str:
    return "{customer.attr." + key + "}"


def references(key: str) -> list[Reference]:
    """Everything that reads attribute `key`, segments first. A few hundred rows at most are read
    (admins' own configuration), each test matched exactly, not by a substring of the JSON."""
    found: list[Reference] = []
    for segment in Segment.objects.order_by("name"):
        if any(isinstance(t, dict) and t.get("key") == key for t in (segment.definition or {}).get("attributes", [])):
            found.append(Reference("Segment", segment.name,
                                   reverse("console:segment", kwargs={"segment_id": segment.pk})))
    for rule in RoutingRule.objects.order_by("position", "id"):
        if any(isinstance(c, dict) and c.get("field") == "attribute" and isinstance(c.get("value"), dict)
               and c["value"].get("key") == key for c in rule.conditions or []):
            found.append(Reference("Routing rule", rule.name, reverse("admin:responses_routingrule_change",
                                                                      args=[rule.pk])))
    text = placeholder(key)
    for canned in CannedResponse.objects.filter(text__contains=text).order_by("title", "id"):
        found.append(Reference("Canned reply", canned.title, reverse("console:canned-edit",
                                                                     kwargs={"canned_id": canned.pk})))
    for macro in Macro.objects.order_by("title", "id"):
        if text in json.dumps(macro.actions, ensure_ascii=False):
            found.append(Reference("Macro", macro.title, reverse("console:macro-edit", kwargs={"macro_id": macro.pk})))
    for rule in SignalRule.objects.order_by("name", "id"):
        if text in json.dumps((rule.actions or {}).get("proactive") or {}, ensure_ascii=False):
            found.append(Reference("Signal rule", rule.name, reverse("console:signal-rule",
                                                                     kwargs={"rule_id": rule.pk})))
    return found


def routing_rule_keys(conditions) -> list[str]:
    """The attribute keys a routing rule's conditions test."""
    return [c["value"]["key"] for c in conditions or [] if isinstance(c, dict) and c.get("field") == "attribute"
            and isinstance(c.get("value"), dict) and isinstance(c["value"].get("key"), str)]


def lock_read_keys(keys) -> None:
    """Lock the definitions of the attributes a reader about to be saved tests, until its
    transaction ends: a deletion (listening.attributes.delete_definition locks the same row) waits
    for the save, then sees the reader and refuses. Without it, a reader saved while a deletion
    checked would not be seen by the check, and would test an attribute that no longer exists."""
    from listening.models import AttributeDefinition

    keys = sorted({key for key in keys if isinstance(key, str)})
    if keys:
        list(AttributeDefinition.objects.select_for_update().filter(key__in=keys).order_by("pk"))


def refuse_if_read(name: str, key: str) -> None:
    """Conflict (409) naming what still reads the attribute; nothing when nothing does."""
    found = references(key)
    if found:
        raise Conflict(f"{name} is still read by {in_words(found)}: change or remove them first, then delete "
                       f"the attribute")


def in_words(found: list[Reference]) -> str:
    """ "2 segments (Premium, Gold) and 1 routing rule (VIP hours)" """
    groups: dict[str, list[str]] = {}
    for ref in found:
        groups.setdefault(ref.kind, []).append(ref.name)
    parts = [f"{len(names)} {kind.lower()}{'s' if len(names) != 1 else ''} ({', '.join(names[:5])}"
             f"{', ...' if len(names) > 5 else ''})" for kind, names in groups.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
