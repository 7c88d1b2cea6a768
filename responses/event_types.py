"""The one list of console event types and the keys their payloads carry.

Every `responses.events.emit` names one of these, and `emit` refuses an unknown type or a payload
without a declared key, so a typo fails in the test that exercises the emitter, not in an
agent's browser. The console's JavaScript reads the same names from `as_js()` (a json_script in
the base page), so renaming a type here and forgetting the console is a test failure too.

A ConsoleEvent reaches the browser as `{"id", "type", "case_id", "at", **payload}`
(`ConsoleEvent.as_dict`). Payloads may carry more than the declared keys (a case update says
what changed); the declared ones are what consumers of the event rely on.

To add a type: declare it below, emit it with `events.emit(event_types.NEW_TYPE, {...})`, and
handle `EVENT.NEW_TYPE` in `static/console/console.js` if the console should react.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Audience(StrEnum):
    """Who an event goes to: a team's consoles, or one user's."""

    TEAM = "team"
    USER = "user"


@dataclass(frozen=True)
class EventType:
    """A console event type: its wire name, the payload keys its readers rely on, and who gets it."""

    name: str
    keys: tuple[str, ...]
    audience: Audience
    description: str

    def __str__(self) -> str:
        return self.name

    @property
    def constant(self) -> str:
        """The name the JavaScript reads it by: "case.created" -> "CASE_CREATED"."""
        return self.name.replace(".", "_").upper()

    def missing(self, payload: dict) -> list[str]:
        return [key for key in self.keys if key not in payload]


class UnknownEventType(ValueError):
    """An emitter named a type this module does not declare (a programming error)."""


class IncompletePayload(ValueError):
    """A payload lacks a key its type declares (a programming error)."""


CASE_CREATED = EventType("case.created", ("case",), Audience.TEAM, "A case was opened (its inbox row summary).")
CASE_UPDATED = EventType("case.updated", ("case",), Audience.TEAM,
                         "A case changed: status, assignee, tags, priority, snooze (optionally `by` and `activity`).")
CASE_REMOVED = EventType("case.removed", ("case_id",), Audience.TEAM, "A case left this team (moved or cleared).")
CASE_ASSIGNED = EventType("case.assigned", ("case_id", "by"), Audience.USER, "A case was assigned to you.")
MESSAGE_CREATED = EventType("message.created", ("message", "case_id"), Audience.TEAM,
                            "A customer's message joined a case.")
REPLY_CREATED = EventType("reply.created", ("reply", "case_id"), Audience.TEAM, "An agent's reply was queued.")
REPLY_UPDATED = EventType("reply.updated", ("reply", "case_id"), Audience.TEAM,
                          "A reply was delivered, failed, or is being retried.")
NOTE_CREATED = EventType("note.created", ("note", "case_id"), Audience.TEAM, "An internal note was added.")
MENTION = EventType("mention", ("note", "case_id", "by"), Audience.USER, "Someone @mentioned you in a note.")
AGENT_PRESENCE = EventType("agent.presence", ("agent", "presence"), Audience.TEAM,
                           "A teammate became available, away or offline.")
CONNECTOR_FAILING = EventType("connector.failing", ("connector", "reason"), Audience.USER,
                              "A source stopped working (to admins).")
WEBHOOK_DISABLED = EventType("webhook.disabled", ("subscription", "reason"), Audience.USER,
                             "An outbound webhook was switched off after repeated failures (to admins).")
ALERT_RAISED = EventType("alert.raised", ("alert",), Audience.USER,
                         "A spike alert was raised (to the team's supervisors and managers, and admins).")
SIGNAL_ALERT = EventType("signal.alert", ("rule", "customer", "reason"), Audience.TEAM,
                         "A rule over customers' signals fired and alerts the team (responses.signal_cases).")

REGISTRY: dict[str, EventType] = {
    t.name: t for t in (CASE_CREATED, CASE_UPDATED, CASE_REMOVED, CASE_ASSIGNED, MESSAGE_CREATED, REPLY_CREATED,
                        REPLY_UPDATED, NOTE_CREATED, MENTION, AGENT_PRESENCE, CONNECTOR_FAILING, WEBHOOK_DISABLED,
                        ALERT_RAISED, SIGNAL_ALERT)
}


def get(event_type: EventType | str) -> EventType:
    """The declared type (by object or wire name), or UnknownEventType."""
    name = event_type.name if isinstance(event_type, EventType) else event_type
    declared = REGISTRY.get(name)
    if declared is None or (isinstance(event_type, EventType) and declared != event_type):
        raise UnknownEventType(f"console event type {name!r} is not declared in responses.event_types")
    return declared


def check(event_type: EventType | str, payload: dict) -> EventType:
    """The declared type, after checking the payload carries its keys."""
    declared = get(event_type)
    if not isinstance(payload, dict):
        raise IncompletePayload(f"{declared.name}: the payload must be a dict, not {type(payload).__name__}")
    missing = declared.missing(payload)
    if missing:
        raise IncompletePayload(f"{declared.name}: the payload lacks {', '.join(missing)}")
    return declared


def as_js() -> dict[str, str]:
    """{"CASE_CREATED": "case.created", ...}: what the console's JavaScript switches on."""
    return {t.constant: t.name for t in REGISTRY.values()}
