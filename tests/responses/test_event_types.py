"""One list of console event types: emitters name a declared type with its payload keys, the
console's JavaScript switches on the exported names, and every page carries them."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from responses import event_types, events
from responses.event_types import Audience, EventType, IncompletePayload, UnknownEventType
from responses.models import ConsoleEvent
from tests.responses.conftest import open_case

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("listening", "learning", "responses", "insight", "cxm")
WRITES_EVENTS = re.compile(r"(?<!class )ConsoleEvent(\.objects\.(create|bulk_create)|\()")


def _python_files():
    for app in PRODUCT:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _emit_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "emit":
                yield node


def test_event_types_emit_refuses_an_unregistered_type(team_a):
    with pytest.raises(UnknownEventType):
        events.emit("case.exploded", {"case": {}}, team_id=team_a.pk)
    impostor = EventType("case.created", ("other",), Audience.TEAM, "not the declared one")
    with pytest.raises(UnknownEventType):
        events.emit(impostor, {"other": 1}, team_id=team_a.pk)
    assert not ConsoleEvent.objects.exists()


def test_event_types_emit_refuses_a_payload_missing_a_declared_key(team_a, agent_a):
    with pytest.raises(IncompletePayload, match="case"):
        events.emit(event_types.CASE_CREATED, {"summary": {}}, team_id=team_a.pk)
    with pytest.raises(IncompletePayload, match="by"):
        events.emit(event_types.MENTION, {"note": {}, "case_id": 1}, user_id=agent_a.pk)
    with pytest.raises(ValueError, match="one user"):  # a user's event never goes to a whole team
        events.emit(event_types.MENTION, {"note": {}, "case_id": 1, "by": None}, team_id=team_a.pk)
    assert not ConsoleEvent.objects.exists()
    event = events.emit(event_types.CASE_REMOVED, {"case_id": 7, "extra": "kept"}, team_id=team_a.pk)
    assert event.type == "case.removed" and event.payload["extra"] == "kept"


def test_event_types_a_routed_case_emits_only_declared_complete_events(connector_a):
    case = open_case(connector_a)
    written = list(ConsoleEvent.objects.filter(case_id=case.pk))
    assert {e.type for e in written} >= {"case.created", "message.created"}
    for event in written:
        assert event_types.check(event.type, event.payload).name == event.type


def test_event_types_every_emitter_names_a_declared_constant():
    """No string literal and no home-made type: `emit(event_types.NAME, ...)` everywhere in the
    product, and ConsoleEvent rows are only written by responses.events."""
    declared = {t.constant for t in event_types.REGISTRY.values()}
    bad, seen = [], 0
    for path in _python_files():
        source = path.read_text()
        tree = ast.parse(source)
        where = path.relative_to(ROOT)
        if where != Path("responses/events.py") and WRITES_EVENTS.search(source):
            bad.append(f"{where}: writes ConsoleEvent rows itself")
        for call in _emit_calls(tree):
            if where == Path("responses/events.py") or not call.args:
                continue
            seen += 1
            first = call.args[0]
            options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            for option in options:
                ok = (isinstance(option, ast.Attribute) and isinstance(option.value, ast.Name)
                      and option.value.id == "event_types" and option.attr in declared)
                if not ok:
                    bad.append(f"{where}:{call.lineno}: emit({ast.unparse(option)}, ...)")
    assert seen >= 20  # the scan found the emitters (routing, replies, cases, assignment, alerts...)
    assert not bad, "\n".join(bad)


def test_event_types_console_js_switches_on_exported_names_only():
    script = (ROOT / "static/console/console.js").read_text()
    used = set(re.findall(r"\bEVENT\.([A-Z_]+)", script))
    assert used and used <= set(event_types.as_js()), used - set(event_types.as_js())
    literal = re.findall(r"""event\.type\s*[!=]==?\s*["']|case\s+["'][a-z]+\.[a-z]+["']\s*:""", script)
    assert not literal, literal


def test_event_types_every_console_page_carries_the_declared_names(client, agent_a):
    client.force_login(agent_a)
    page = client.get("/console/").content.decode()
    found = re.search(r'<script id="cxm-event-types" type="application/json">(.*?)</script>', page, re.S)
    assert found, "base.html lost {% console_event_types %}"
    assert json.loads(found.group(1)) == event_types.as_js()
    assert json.loads(found.group(1))["CASE_CREATED"] == "case.created"
