"""Custom attributes in the console: admins define them (/console/attributes/), agents set a
customer's profile from the case page's side panel (/console/cases/<id>/profile/). The checks are
listening.attributes'; these shells map form fields and answer with a reason on bad input."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from listening.actions import match_customer
from listening.attributes import customers_with_value, delete_definition, save_definition, set_profile
from listening.exceptions import PayloadInvalid
from listening.models import AttributeDefinition, AttributeKind, AuditEvent, Customer
from listening.signal_types import SIGNAL_TYPES
from responses import access, attribute_usage
from responses.exceptions import CaseNotFound, Conflict
from responses.views.base import body, console_context, console_view, done, object_id, wants_json
from responses.views.connectors import client_ip


def _definition_dict(d: AttributeDefinition) -> dict:
    return {"id": d.pk, "key": d.key, "name": d.name, "kind": d.kind, "choices": d.choices,
            "signal_type": d.signal_type, "signal_field": d.signal_field}


def _form_context(request: HttpRequest, **extra) -> dict:
    return {**console_context(request), "kinds": AttributeKind.choices,
            "signal_types": sorted(((t.name, t.label) for t in SIGNAL_TYPES.values()), key=lambda t: t[1]), **extra}


@console_view("GET", "POST")
def attribute_list(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    error, data = "", {}
    if request.method == "POST":
        data = body(request)
        try:
            saved = save_definition(data)
        except PayloadInvalid as refused:
            if wants_json(request):
                raise
            error = refused.reason
        else:
            if wants_json(request):
                return JsonResponse({"ok": True, "attribute": _definition_dict(saved)}, status=201)
            return redirect("console:attributes")
    items = list(AttributeDefinition.objects.all())
    if wants_json(request):
        return JsonResponse({"attributes": [_definition_dict(d) for d in items]})
    deleted = list(AuditEvent.objects.filter(action="attribute_deleted")[:10])
    return render(request, "console/attribute_list.html",
                  _form_context(request, items=items, error=error, data=data, deleted=deleted),
                  status=400 if error else 200)


@console_view("GET", "POST")
def attribute_edit(request: HttpRequest, attribute_id: str) -> HttpResponse:
    access.require_admin(request.user)
    definition = AttributeDefinition.objects.filter(pk=object_id(attribute_id, "attribute")).first()
    if definition is None:
        raise CaseNotFound("no such attribute")
    error = ""
    if request.method == "POST":
        try:
            definition = save_definition(body(request), existing=definition)
        except PayloadInvalid as refused:
            if wants_json(request):
                raise
            error = refused.reason
        else:
            if wants_json(request):
                return JsonResponse({"ok": True, "attribute": _definition_dict(definition)})
            return redirect("console:attributes")
    if wants_json(request):
        return JsonResponse({"attribute": _definition_dict(definition)})
    return render(request, "console/attribute_form.html", _form_context(request, definition=definition, error=error),
                  status=400 if error else 200)


@console_view("GET", "POST")
def attribute_delete(request: HttpRequest, attribute_id: str) -> HttpResponse:
    """GET: the confirmation, saying how many customers hold a value (they lose it) or, while
    segments, routing rules, canned replies, macros or signal rules read the attribute, which ones
    (deleting is refused until they no longer do: responses.attribute_usage says why). POST:
    delete, values included, audited; a 409 naming the readers if any appeared meanwhile."""
    access.require_admin(request.user)
    definition = AttributeDefinition.objects.filter(pk=object_id(attribute_id, "attribute")).first()
    if definition is None:
        raise CaseNotFound("no such attribute")
    found = attribute_usage.references(definition.key)
    error = ""
    if request.method == "POST":
        try:
            removed = delete_definition(definition, actor=request.user, ip=client_ip(request),
                                        check=lambda key: attribute_usage.refuse_if_read(definition.name, key))
        except Conflict as refused:
            if wants_json(request):
                raise
            error, found = refused.reason, attribute_usage.references(definition.key)
        else:
            return done(request, {"deleted": definition.key, "values_removed": removed},
                        reverse("console:attributes"))
    holders = customers_with_value(definition.key)
    if wants_json(request):
        return JsonResponse({"attribute": _definition_dict(definition), "customers_with_value": holders,
                             "references": [r.as_dict() for r in found]})
    return render(request, "console/attribute_delete.html", {
        **console_context(request), "definition": definition, "holders": holders, "references": found,
        "error": error}, status=409 if error else 200)


@console_view("POST")
def case_profile(request: HttpRequest, case_id: str) -> HttpResponse:
    """An agent sets the case's customer's tier, time zone, preferred channel and attributes. A
    conversation whose author has no customer record yet gets one (never merged with another)."""
    access.require_reply(request.user)
    case = access.get_case(request.user, case_id)
    contact = case.conversation.contact
    if contact is None:
        raise PayloadInvalid("this conversation has no known author to keep a profile for")
    data = body(request)
    changes: dict = {name: data[name] for name in ("tier", "time_zone", "preferred_channel") if name in data}
    given = data.get("attributes")
    if isinstance(given, dict):
        changes["attributes"] = given
    elif given is not None:
        raise PayloadInvalid("attributes must be an object of key: value")
    else:  # a form: one field per attribute, named attr.<key>
        changes["attributes"] = {k.removeprefix("attr."): v for k, v in data.items() if k.startswith("attr.")}
    customer = contact.customer or match_customer(contact)
    customer = set_profile(Customer.objects.get(pk=customer.pk), changes, source="agent")
    return done(request, {"customer": customer.pk, "tier": customer.tier, "attributes": customer.attributes,
                          "preferred_channel": customer.preferred_channel},
                reverse("console:case", kwargs={"case_id": case.pk}) + "#customer")
