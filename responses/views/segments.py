"""Segments in the console (/console/segments/): admins and brand managers save filters over
customers' tier, attributes and signals and see how many customers each holds. The checks and the
query are responses.segments'; a form's fields are mapped to a definition here, JSON callers send
{"name", "definition"} as documented there."""

from __future__ import annotations

import contextlib
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from listening.models import AttributeDefinition, CustomerTier, Segment
from listening.signal_types import SIGNAL_TYPES
from responses import segments
from responses.exceptions import CaseNotFound, InvalidRequest
from responses.views.base import body, console_context, console_view, object_id, wants_json

ATTRIBUTE_OPS = {"in": "is one of", "gte": "is at least", "lte": "is at most", "set": "is set", "unset": "is not set"}


def _segment_dict(segment: Segment, count: int | None = None) -> dict:
    out = {"id": segment.pk, "name": segment.name, "definition": segment.definition,
           "description": segments.describe(segment.definition)}
    if count is not None:
        out["customers"] = count
    return out


def definition_from_form(data: dict[str, Any]) -> dict[str, Any]:
    """The form's fields as a definition; responses.segments.clean_definition checks it. Tier
    checkboxes, tags, and any number of signal and attribute tests, each a row of fields numbered
    from 0 (`signal_type_0`, `signal_count_0`, `signal_days_0`; `attr_key_0`, `attr_op_0`,
    `attr_value_0`); a row left blank is no test. The unnumbered names of one test each are read
    too (the form before rows could be added)."""
    if isinstance(data.get("definition"), dict):
        return data["definition"]
    tiers = data.get("tier") or []
    definition: dict[str, Any] = {"tier": [tiers] if isinstance(tiers, str) else tiers}
    signals, tests = [], []
    for suffix in _row_suffixes(data, ("signal_type", "attr_key")):
        row = str(int(suffix[1:]) + 1) if suffix else "1"
        if data.get(f"signal_type{suffix}"):
            signals.append({"type": data[f"signal_type{suffix}"],
                            "count": _int(data.get(f"signal_count{suffix}"), "count", row),
                            "days": _int(data.get(f"signal_days{suffix}"), "days", row)})
        key = data.get(f"attr_key{suffix}") or ""
        if key:
            tests.append(_attribute_test(key, data.get(f"attr_op{suffix}") or "in",
                                         str(data.get(f"attr_value{suffix}") or "")))
    definition["signals"], definition["attributes"] = signals, tests
    tags = [t.strip() for t in str(data.get("tags") or "").split(",") if t.strip()]
    if tags:
        definition["tags"] = tags
    return {k: v for k, v in definition.items() if v}


def _row_suffixes(data: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """"" (the unnumbered fields) and "_0", "_1", ... in order, for the numbered rows present.
    More rows than segments take is refused by clean_definition's own limit."""
    numbers = sorted({int(k.rsplit("_", 1)[1]) for k in data for name in names
                      if k.startswith(f"{name}_") and k.rsplit("_", 1)[1].isdigit()
                      and len(k.rsplit("_", 1)[1]) <= 3 and k.rsplit("_", 1)[0] == name})
    return ["", *(f"_{n}" for n in numbers)]


def _attribute_test(key: str, op: str, value: str) -> dict[str, Any]:
    if op not in ATTRIBUTE_OPS:
        raise InvalidRequest(f"the attribute test must be one of {', '.join(ATTRIBUTE_OPS)}")
    if op in ("set", "unset"):
        return {"key": key, "set": op == "set"}
    if op == "in":
        return {"key": key, "in": [v.strip() for v in value.split(",") if v.strip()]}
    return {"key": key, op: _number_or_text(value)}


def form_rows(definition: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """The rows the form shows for a saved definition: each signal and attribute test, as the
    fields hold them (the op of an attribute test, its value as typed)."""
    definition = definition or {}
    attributes = []
    for test in definition.get("attributes", []):
        if "set" in test:
            op, value = ("set" if test["set"] else "unset"), ""
        elif "in" in test:
            op, value = "in", ", ".join(map(str, test["in"]))
        else:
            op = "gte" if "gte" in test else "lte"
            value = str(test.get(op, ""))
        attributes.append({"key": test.get("key", ""), "op": op, "value": value})
    return {"signals": list(definition.get("signals", [])), "attributes": attributes}


def _int(value: Any, name: str, row: str = "1") -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidRequest(f"signal {name} must be a whole number (signal test {row})") from None


def _number_or_text(value: str) -> float | int | str:
    try:
        number = float(value)
    except ValueError:
        return value.strip()
    return int(number) if number.is_integer() else number


def _context(request: HttpRequest, **extra) -> dict:
    segment = extra.get("segment")
    rows = form_rows(segment.definition if segment else None)
    data = extra.get("data") or {}
    if data and not segment:  # a refused new segment: its rows come back as typed
        with contextlib.suppress(InvalidRequest):
            rows = form_rows(definition_from_form(data))
    return {**console_context(request), "tiers": CustomerTier.choices, "ops": ATTRIBUTE_OPS.items(),
            "rows": rows, "max_tests": segments.MAX_TESTS,
            "attribute_definitions": AttributeDefinition.objects.all(),
            "signal_types": sorted(((t.name, t.label) for t in SIGNAL_TYPES.values()), key=lambda t: t[1]), **extra}


@console_view("GET", "POST")
def segment_list(request: HttpRequest) -> HttpResponse:
    segments.require_segment_user(request.user)
    error, data = "", {}
    if request.method == "POST":
        data = body(request)
        try:
            saved = segments.save_segment(request.user, str(data.get("name") or ""), definition_from_form(data))
        except InvalidRequest as refused:
            if wants_json(request):
                raise
            error = refused.reason
        else:
            if wants_json(request):
                return JsonResponse({"ok": True, "segment": _segment_dict(saved)}, status=201)
            return redirect("console:segments")
    items = [(s, segments.count_for(request.user, s)) for s in Segment.objects.all()]
    if wants_json(request):
        return JsonResponse({"segments": [_segment_dict(s, n) for s, n in items]})
    for segment, n in items:
        segment.description, segment.customers = segments.describe(segment.definition), n
    return render(request, "console/segment_list.html",
                  _context(request, items=[s for s, _ in items], error=error, data=data), status=400 if error else 200)


def _get(segment_id: str) -> Segment:
    segment = Segment.objects.filter(pk=object_id(segment_id, "segment")).first()
    if segment is None:
        raise CaseNotFound("no such segment")
    return segment


@console_view("GET", "POST")
def segment_edit(request: HttpRequest, segment_id: str) -> HttpResponse:
    segments.require_segment_user(request.user)
    segment, error = _get(segment_id), ""
    if request.method == "POST":
        data = body(request)
        try:
            segment = segments.save_segment(request.user, str(data.get("name") or ""), definition_from_form(data),
                                            segment=segment)
        except InvalidRequest as refused:
            if wants_json(request):
                raise
            error = refused.reason
        else:
            if wants_json(request):
                return JsonResponse({"ok": True, "segment": _segment_dict(segment)})
            return redirect("console:segments")
    count = segments.count_for(request.user, segment)
    if wants_json(request):
        return JsonResponse({"segment": _segment_dict(segment, count)})
    segment.description, segment.customers = segments.describe(segment.definition), count
    return render(request, "console/segment_form.html", _context(request, segment=segment, error=error),
                  status=400 if error else 200)


@console_view("POST")
def segment_preview(request: HttpRequest) -> JsonResponse:
    """How many customers the form's tests select now (the form's live count): the definition in
    words and the count, or the reason it cannot be counted. Saves nothing."""
    segments.require_segment_user(request.user)
    try:
        given = definition_from_form(body(request))
        if not given:
            return JsonResponse({"ok": False, "empty": True, "reason": "add a test to count its customers"})
        definition = segments.clean_definition(given)
    except InvalidRequest as refused:
        return JsonResponse({"ok": False, "reason": refused.reason})
    return JsonResponse({"ok": True, "customers": segments.count_definition(request.user, definition),
                         "description": segments.describe(definition)})


@console_view("POST")
def segment_delete(request: HttpRequest, segment_id: str) -> HttpResponse:
    segments.require_segment_user(request.user)
    segments.delete_segment(request.user, _get(segment_id))
    if wants_json(request):
        return JsonResponse({"ok": True})
    return redirect("console:segments")
