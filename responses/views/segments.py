"""Segments in the console (/console/segments/): admins and brand managers save filters over
customers' tier, attributes and signals and see how many customers each holds. The checks and the
query are responses.segments'; a form's fields are mapped to a definition here, JSON callers send
{"name", "definition"} as documented there."""

from __future__ import annotations

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
    """The form's fields (tier checkboxes, one signal test, one attribute test, tags) as a
    definition; responses.segments.clean_definition checks it."""
    if isinstance(data.get("definition"), dict):
        return data["definition"]
    tiers = data.get("tier") or []
    definition: dict[str, Any] = {"tier": [tiers] if isinstance(tiers, str) else tiers}
    if data.get("signal_type"):
        definition["signals"] = [{"type": data["signal_type"], "count": _int(data.get("signal_count"), "count"),
                                  "days": _int(data.get("signal_days"), "days")}]
    key, op, value = data.get("attr_key") or "", data.get("attr_op") or "in", str(data.get("attr_value") or "")
    if key:
        if op not in ATTRIBUTE_OPS:
            raise InvalidRequest(f"the attribute test must be one of {', '.join(ATTRIBUTE_OPS)}")
        if op in ("set", "unset"):
            test: dict[str, Any] = {"key": key, "set": op == "set"}
        elif op == "in":
            test = {"key": key, "in": [v.strip() for v in value.split(",") if v.strip()]}
        else:
            test = {"key": key, op: _number_or_text(value)}
        definition["attributes"] = [test]
    tags = [t.strip() for t in str(data.get("tags") or "").split(",") if t.strip()]
    if tags:
        definition["tags"] = tags
    return {k: v for k, v in definition.items() if v}


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidRequest(f"signal {name} must be a whole number") from None


def _number_or_text(value: str) -> float | int | str:
    try:
        number = float(value)
    except ValueError:
        return value.strip()
    return int(number) if number.is_integer() else number


def _context(request: HttpRequest, **extra) -> dict:
    return {**console_context(request), "tiers": CustomerTier.choices, "ops": ATTRIBUTE_OPS.items(),
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
def segment_delete(request: HttpRequest, segment_id: str) -> HttpResponse:
    segments.require_segment_user(request.user)
    segments.delete_segment(request.user, _get(segment_id))
    if wants_json(request):
        return JsonResponse({"ok": True})
    return redirect("console:segments")
