"""Canned responses: everyone in the console may read their teams' and the global ones;
supervisors create, edit and delete their own teams' ones, and only admins the global ones (a
global response reaches every team's composer, so a supervisor making one would write into teams
they do not run)."""

from __future__ import annotations

from django import forms
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from responses import access
from responses.exceptions import CaseNotFound, NotAllowed
from responses.models import CannedResponse, Role, Team
from responses.replies import PLACEHOLDERS
from responses.views.base import body, console_context, console_view, object_id, wants_json


class CannedForm(forms.ModelForm):
    class Meta:
        model = CannedResponse
        fields = ["title", "shortcut", "team", "text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 8, "maxlength": 4000})}

    def __init__(self, *args, teams=None, may_be_global: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams if teams is not None else Team.objects.none()
        self.fields["team"].required = not may_be_global
        self.fields["team"].empty_label = "All teams (global)" if may_be_global else None
        if not may_be_global:
            self.fields["team"].error_messages["required"] = (
                "choose one of your teams: only admins make canned responses for all teams")
        self.fields["text"].help_text = "Placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS)


def _visible(user):
    return CannedResponse.objects.filter(Q(team_id__in=access.team_ids(user)) | Q(team__isnull=True))


def _get(user, canned_id: str) -> CannedResponse:
    canned = _visible(user).filter(pk=object_id(canned_id, "canned response")).first()
    if canned is None:
        raise CaseNotFound("no such canned response")
    return canned


def _is_admin(user) -> bool:
    return access.role_of(user) == Role.ADMIN


def _may_change(canned: CannedResponse, admin: bool) -> bool:
    """A global response is the admins' alone; a team's, its supervisors' (visible means theirs)."""
    return admin or canned.team_id is not None


def _changeable(user, canned_id: str) -> CannedResponse:
    canned = _get(user, canned_id)
    if not _may_change(canned, _is_admin(user)):
        raise NotAllowed("only admins change canned responses for all teams")
    return canned


@console_view("GET")
def canned_list(request: HttpRequest) -> HttpResponse:
    items = list(_visible(request.user).select_related("team").order_by("title"))
    admin = _is_admin(request.user)
    for item in items:
        item.may_change = _may_change(item, admin)
    if wants_json(request):
        return JsonResponse({"canned": [{"id": c.pk, "title": c.title, "shortcut": c.shortcut, "text": c.text,
                                         "team": c.team_id} for c in items]})
    return render(request, "console/canned_list.html",
                  {**console_context(request), "items": items, "placeholders": PLACEHOLDERS})


@console_view("GET", "POST")
def canned_new(request: HttpRequest) -> HttpResponse:
    access.require_supervisor(request.user)
    return _edit(request, CannedResponse())


@console_view("GET", "POST")
def canned_edit(request: HttpRequest, canned_id: str) -> HttpResponse:
    access.require_supervisor(request.user)
    return _edit(request, _changeable(request.user, canned_id))


def _edit(request: HttpRequest, canned: CannedResponse) -> HttpResponse:
    teams = Team.objects.filter(pk__in=access.team_ids(request.user))
    data = body(request) if request.method == "POST" else None
    form = CannedForm(data, instance=canned, teams=teams, may_be_global=_is_admin(request.user))
    if request.method == "POST":
        if form.is_valid():
            saved = form.save()
            if wants_json(request):
                return JsonResponse({"ok": True, "id": saved.pk})
            return redirect("console:canned-list")
        if wants_json(request):
            return JsonResponse({"error": "invalid", "reason": "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())}, status=400)
    status = 400 if form.errors else 200
    return render(request, "console/canned_form.html",
                  {**console_context(request), "form": form, "canned": canned, "placeholders": PLACEHOLDERS},
                  status=status)


@console_view("POST")
def canned_delete(request: HttpRequest, canned_id: str) -> HttpResponse:
    access.require_supervisor(request.user)
    canned = _changeable(request.user, canned_id)
    canned.delete()
    if wants_json(request):
        return JsonResponse({"ok": True})
    return redirect("console:canned-list")
