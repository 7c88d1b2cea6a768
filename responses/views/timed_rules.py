"""Timed rules in the console: supervisors list, add, change and delete their teams' rules."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from responses import calendars, timed_rules
from responses.exceptions import CaseNotFound
from responses.models import CannedResponse, Queue, TimedRule
from responses.views.base import body, console_context, console_view, object_id, wants_json


class TimedRuleForm(forms.ModelForm):
    after_hours = forms.DecimalField(label="For (business hours)", min_value=Decimal("0.05"),
                                     max_value=Decimal(timed_rules.MAX_AFTER_MINUTES / 60), decimal_places=2,
                                     help_text="Counted in the team's business hours: nights, weekends and "
                                               "holidays do not count.")

    class Meta:
        model = TimedRule
        fields = ["name", "team", "enabled", "trigger", "action", "canned", "queue", "priority_boost"]
        labels = {"trigger": "When a case is", "action": "Then", "canned": "Message to the customer",
                  "queue": "Move it to the queue", "priority_boost": "Raise the priority by",
                  "enabled": "On (the rule runs)"}
        help_texts = {"canned": "A canned response; it is sent only where the channel still accepts a reply.",
                      "queue": "",
                      "priority_boost": "Between 0 and 1, added to the case's priority: 0.3 takes a High case (0.5) "
                                        "to Urgent (0.8)."}

    # The order a supervisor reads the rule in: when, how long, then what.
    field_order = ["name", "team", "trigger", "after_hours", "action", "canned", "queue", "priority_boost", "enabled"]

    def __init__(self, *args, teams=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams
        self.fields["team"].empty_label = None
        self.fields["queue"].queryset = Queue.objects.filter(team__in=teams).select_related("team")
        self.fields["queue"].label_from_instance = lambda q: f"{q.team.name}: {q.name}"
        self.fields["canned"].queryset = CannedResponse.objects.filter(Q(team__in=teams) | Q(team__isnull=True))
        self.fields["canned"].empty_label = "No message"
        self.fields["queue"].empty_label = "—"
        if self.instance.pk:
            self.initial.setdefault("after_hours", Decimal(self.instance.after_minutes) / 60)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        rule = self.instance
        for name in ("name", "team", "enabled", "trigger", "action", "canned", "queue", "priority_boost"):
            setattr(rule, name, data.get(name))
        rule.after_minutes = int(round(data["after_hours"] * 60))
        try:
            timed_rules.validate(rule)
        except ValidationError as exc:
            for name, reasons in exc.message_dict.items():
                self.add_error("after_hours" if name == "after_minutes" else name, reasons)
        return data


def _rules(user):
    return TimedRule.objects.filter(team__in=calendars.editable_teams(user))


def _get(user, rule_id: str) -> TimedRule:
    rule = _rules(user).filter(pk=object_id(rule_id, "timed rule")).first()
    if rule is None:
        raise CaseNotFound("no such timed rule")
    return rule


@console_view("GET")
def rule_list(request: HttpRequest) -> HttpResponse:
    rules = list(_rules(request.user).select_related("team", "queue", "canned").order_by("team__name", "after_minutes"))
    for rule in rules:
        rule.words = timed_rules.describe(rule)
    if wants_json(request):
        return JsonResponse({"rules": [{"id": r.pk, "name": r.name, "team": r.team_id, "enabled": r.enabled,
                                        "description": r.words} for r in rules]})
    return render(request, "console/timed_rule_list.html", {**console_context(request), "rules": rules})


@console_view("GET", "POST")
def rule_new(request: HttpRequest) -> HttpResponse:
    return _edit(request, TimedRule(created_by=request.user))


@console_view("GET", "POST")
def rule_edit(request: HttpRequest, rule_id: str) -> HttpResponse:
    return _edit(request, _get(request.user, rule_id))


def _edit(request: HttpRequest, rule: TimedRule) -> HttpResponse:
    teams = calendars.editable_teams(request.user)
    data = body(request) if request.method == "POST" else None
    if data is not None and "enabled" not in data and wants_json(request):
        data["enabled"] = True
    form = TimedRuleForm(data, instance=rule, teams=teams)
    if request.method == "POST":
        if form.is_valid():
            saved = form.save()
            if wants_json(request):
                return JsonResponse({"ok": True, "id": saved.pk, "description": timed_rules.describe(saved)})
            return redirect("console:timed-rules")
        if wants_json(request):
            return JsonResponse({"error": "invalid", "reason": "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())}, status=400)
    return render(request, "console/timed_rule_form.html", {**console_context(request), "form": form, "rule": rule},
                  status=400 if form.errors else 200)


@console_view("POST")
def rule_delete(request: HttpRequest, rule_id: str) -> HttpResponse:
    _get(request.user, rule_id).delete()
    if wants_json(request):
        return JsonResponse({"ok": True})
    return redirect("console:timed-rules")
