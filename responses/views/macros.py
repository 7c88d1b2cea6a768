"""Macros in the console: everyone who uses the console sees their teams' and the global ones
(with what is broken in them flagged); supervisors create, edit and delete their teams' ones,
admins also the global ones (as canned responses). The form edits the common steps in a fixed
order; a JSON body may send the steps themselves ("actions")."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from responses import access, assignment, macros
from responses.exceptions import InvalidRequest, NotAllowed
from responses.models import CaseStatus, Macro, Role, Team
from responses.views.base import body, console_context, console_view, object_id, wants_json


class MacroForm(forms.Form):
    title = forms.CharField(max_length=macros.MAX_TITLE)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    reply = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 6}),
                            help_text="Placeholders: " + ", ".join(macros.PLACEHOLDERS))
    add_tags = forms.CharField(required=False, max_length=900, help_text="Comma separated")
    remove_tags = forms.CharField(required=False, max_length=900, help_text="Comma separated")
    status = forms.ChoiceField(required=False, choices=[("", "— unchanged —"), *CaseStatus.choices])
    assignee = forms.ChoiceField(required=False)
    priority = forms.FloatField(required=False, min_value=0.0, max_value=1.0, help_text="0 to 1; empty: unchanged")

    def __init__(self, *args, teams=None, may_be_global: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        teams = teams if teams is not None else Team.objects.none()
        self.fields["team"].queryset = teams
        self.fields["team"].required = not may_be_global
        self.fields["team"].empty_label = "All teams (global)" if may_be_global else None
        users = (get_user_model().objects.filter(cxm_teams__in=teams, is_active=True,
                                                 cxm_profile__role__in=assignment.ASSIGNABLE_ROLES)
                 .distinct().order_by("first_name", "username"))
        self.fields["assignee"].choices = [("", "— unchanged —"), ("me", "The agent applying it"),
                                           ("none", "Nobody (unassign)"),
                                           *[(str(u.pk), u.get_full_name() or u.get_username()) for u in users]]

    @classmethod
    def initial_for(cls, macro: Macro) -> dict:
        initial = {"title": macro.title, "team": macro.team_id}
        for step in macro.actions if isinstance(macro.actions, list) else []:
            kind = step.get("type") if isinstance(step, dict) else None
            if kind == "reply":
                initial["reply"] = step.get("text", "")
            elif kind in ("add_tags", "remove_tags"):
                initial[kind] = ", ".join(step.get("tags") or [])
            elif kind == "status":
                initial["status"] = step.get("value", "")
            elif kind == "assign":
                initial["assignee"] = str(step.get("user", ""))
            elif kind == "priority":
                initial["priority"] = step.get("value")
        return initial

    def steps(self) -> list[dict]:
        data = self.cleaned_data
        steps: list[dict] = []
        for kind in ("add_tags", "remove_tags"):
            if data.get(kind, "").strip():
                steps.append({"type": kind, "tags": data[kind]})
        if data.get("assignee"):
            steps.append({"type": "assign", "user": data["assignee"]})
        if data.get("priority") is not None:
            steps.append({"type": "priority", "value": data["priority"]})
        if data.get("reply", "").strip():
            steps.append({"type": "reply", "text": data["reply"]})
        if data.get("status"):
            steps.append({"type": "status", "value": data["status"]})
        return steps


def _is_admin(user) -> bool:
    return access.role_of(user) == Role.ADMIN


@console_view("GET")
def macro_list(request: HttpRequest) -> HttpResponse:
    items = list(macros.visible(request.user).select_related("team").order_by("title", "id"))
    for item in items:
        item.problems = macros.problems(item)
        item.may_change = macros.may_change(request.user, item)
        item.summary = [macros.STEP_TYPES.get(s.get("type"), "?") for s in item.actions if isinstance(s, dict)]
    if wants_json(request):
        return JsonResponse({"macros": [{"id": m.pk, "title": m.title, "team": m.team_id, "actions": m.actions,
                                         "problems": m.problems} for m in items]})
    return render(request, "console/macro_list.html", {**console_context(request), "items": items})


@console_view("GET", "POST")
def macro_new(request: HttpRequest) -> HttpResponse:
    access.require_supervisor(request.user)
    return _edit(request, Macro())


@console_view("GET", "POST")
def macro_edit(request: HttpRequest, macro_id: str) -> HttpResponse:
    access.require_supervisor(request.user)
    macro = macros.get_macro(request.user, object_id(macro_id, "macro"))
    if not macros.may_change(request.user, macro):
        raise NotAllowed("only admins change macros for all teams")
    return _edit(request, macro)


def _edit(request: HttpRequest, macro: Macro) -> HttpResponse:
    teams = Team.objects.filter(pk__in=access.team_ids(request.user))
    admin = _is_admin(request.user)
    data = body(request) if request.method == "POST" else None
    form = MacroForm(data, initial=MacroForm.initial_for(macro) if macro.pk else None, teams=teams,
                     may_be_global=admin)
    error = ""
    if request.method == "POST":
        try:
            if wants_json(request) and isinstance(data.get("actions"), list):
                team = data.get("team")
                team_id = object_id(team, "team") if team not in (None, "") else None
                title, actions = data.get("title"), data["actions"]
                if not isinstance(title, str):
                    raise InvalidRequest("title must be text")
            elif form.is_valid():
                team_id = form.cleaned_data["team"].pk if form.cleaned_data["team"] else None
                title, actions = form.cleaned_data["title"], form.steps()
            else:
                raise InvalidRequest("; ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items()))
            saved = macros.save_macro(request.user, macro, title=title, team_id=team_id, actions=actions)
        except InvalidRequest as exc:
            if wants_json(request):
                raise
            error = exc.reason
        else:
            if wants_json(request):
                return JsonResponse({"ok": True, "id": saved.pk})
            return redirect("console:macro-list")
    return render(request, "console/macro_form.html",
                  {**console_context(request), "form": form, "macro": macro, "error": error},
                  status=400 if error else 200)


@console_view("POST")
def macro_delete(request: HttpRequest, macro_id: str) -> HttpResponse:
    access.require_supervisor(request.user)
    macro = macros.get_macro(request.user, object_id(macro_id, "macro"))
    macros.delete_macro(request.user, macro)
    if wants_json(request):
        return JsonResponse({"ok": True})
    return redirect("console:macro-list")
