"""Rules over signals in the console: admins list, add, change and switch off SignalRules. The
checks are responses.signal_rules.validate_signal_rule's (a rule over every signal, or one that
does nothing, is refused with the reason); this shell only maps form fields to the rule."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from listening.signal_types import SIGNAL_TYPES
from responses import access
from responses.exceptions import CaseNotFound
from responses.models import SignalRule, Team
from responses.signal_rules import MAX_PROACTIVE_VALUES, describe, validate_signal_rule
from responses.views.base import body, console_context, console_view, done, flag, object_id, wants_json

# Where a validation error on the rule lands on the form.
FIELD_OF = {"actions": "open_case", "window_minutes": "window_minutes", "absence_days": "absence_days"}


class SignalRuleForm(forms.Form):
    name = forms.CharField(max_length=120)
    enabled = forms.BooleanField(required=False, initial=True, label="On")
    signal_type = forms.ChoiceField(label="Signal", required=False)
    kind = forms.ChoiceField(label="When", choices=SignalRule.Kind.choices)
    per = forms.ChoiceField(label="Counted per", choices=SignalRule.Per.choices)
    threshold = forms.IntegerField(label="How many signals", min_value=0, required=False, initial=10)
    window_minutes = forms.IntegerField(label="Within (minutes)", min_value=0, required=False, initial=60,
                                        help_text="Several signals: the window. A signal then an unhappy message: "
                                                  "how soon the message follows.")
    absence_days = forms.IntegerField(label="Days without a signal", min_value=0, required=False, initial=0)
    team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False,
                                  empty_label="The customer's channel's team",
                                  help_text="Whose Care queue gets the case.")
    open_case = forms.BooleanField(required=False, label="Open a proactive case in the Care queue")
    priority = forms.DecimalField(required=False, min_value=0, max_value=1, decimal_places=2,
                                  label="Priority of the case (0 to 1)")
    tag = forms.CharField(required=False, max_length=40, label="Tag the customer")
    alert = forms.BooleanField(required=False, label="Alert the team")
    proactive_template = forms.CharField(required=False, max_length=512, label="Send an approved template",
                                         help_text="The template's name on the case's channel (e.g. WhatsApp), "
                                                   "sent on the case the rule opens.")
    proactive_values = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                       label="Template values, one per line",
                                       help_text="{customer_first_name}, {customer_name} and {brand} are filled in.")

    def __init__(self, *args, rule: SignalRule, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rule = rule
        self.fields["signal_type"].choices = [("", "Choose a signal…")] + [
            (name, kind.label) for name, kind in sorted(SIGNAL_TYPES.items(), key=lambda item: item[1].label)]
        if rule.pk and not self.is_bound:
            actions = rule.actions or {}
            spec = actions.get("proactive") or {}
            self.initial.update({
                "name": rule.name, "enabled": rule.enabled, "signal_type": rule.signal_type, "kind": rule.kind,
                "per": rule.per, "threshold": rule.threshold, "window_minutes": rule.window_minutes,
                "absence_days": rule.absence_days, "team": rule.team_id,
                "open_case": actions.get("open_case", False), "priority": actions.get("priority"),
                "tag": actions.get("tag", ""), "alert": actions.get("alert", False),
                "proactive_template": spec.get("template", ""), "proactive_values": "\n".join(spec.get("values", [])),
            })

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        rule = self.rule
        rule.name, rule.enabled = data["name"].strip(), data["enabled"]
        rule.signal_type, rule.kind, rule.per = data["signal_type"], data["kind"], data["per"]
        rule.threshold, rule.window_minutes = data["threshold"] or 0, data["window_minutes"] or 0
        rule.absence_days, rule.team = data["absence_days"] or 0, data["team"]
        actions: dict = {}
        if data["open_case"]:
            actions["open_case"] = True
        if data["priority"] is not None:
            actions["priority"] = float(data["priority"])
        if data["tag"].strip():
            actions["tag"] = data["tag"].strip()
        if data["alert"]:
            actions["alert"] = True
        if data["proactive_template"].strip():
            values = [line.strip() for line in data["proactive_values"].splitlines() if line.strip()]
            # One over the limit is kept, so the validator refuses too many instead of dropping some.
            actions["proactive"] = {"template": data["proactive_template"].strip(),
                                    "values": values[:MAX_PROACTIVE_VALUES + 1]}
        rule.actions = actions
        try:
            validate_signal_rule(rule)
        except ValidationError as exc:
            for name, reasons in exc.message_dict.items():
                self.add_error(FIELD_OF.get(name, name) if FIELD_OF.get(name, name) in self.fields else None, reasons)
        return data


def _get(rule_id: str) -> SignalRule:
    rule = SignalRule.objects.filter(pk=object_id(rule_id, "signal rule")).first()
    if rule is None:
        raise CaseNotFound("no such signal rule")
    return rule


def _row(rule: SignalRule) -> dict:
    return {"id": rule.pk, "name": rule.name, "enabled": rule.enabled, "signal_type": rule.signal_type,
            "kind": rule.kind, "per": rule.per, "threshold": rule.threshold, "window_minutes": rule.window_minutes,
            "absence_days": rule.absence_days, "team": rule.team_id, "actions": rule.actions,
            "description": describe(rule)}


@console_view("GET")
def rule_list(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    rules = list(SignalRule.objects.select_related("team").order_by("name", "id"))
    if wants_json(request):
        return JsonResponse({"rules": [_row(rule) for rule in rules]})
    for rule in rules:
        rule.words = describe(rule)
    return render(request, "console/signal_rules.html", {**console_context(request), "rules": rules})


@console_view("GET", "POST")
def rule_new(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    return _edit(request, SignalRule())


@console_view("GET", "POST")
def rule_edit(request: HttpRequest, rule_id: str) -> HttpResponse:
    access.require_admin(request.user)
    return _edit(request, _get(rule_id))


def _edit(request: HttpRequest, rule: SignalRule) -> HttpResponse:
    data = body(request) if request.method == "POST" else None
    if data is not None and wants_json(request):
        data.setdefault("enabled", True)
        data = {key: ("on" if value is True else "" if value is False else value) for key, value in data.items()}
    form = SignalRuleForm(data, rule=rule)
    if request.method == "POST":
        if form.is_valid():
            form.rule.save()
            if wants_json(request):
                return JsonResponse({"ok": True, **_row(form.rule)})
            return redirect("console:signal-rules")
        if wants_json(request):
            return JsonResponse({"error": "invalid", "reason": "; ".join(
                f"{field}: {' '.join(errors)}" if field != "__all__" else " ".join(errors)
                for field, errors in form.errors.items())}, status=400)
    return render(request, "console/signal_rule_form.html", {**console_context(request), "form": form, "rule": rule},
                  status=400 if form.errors else 200)


@console_view("POST")
def rule_enabled(request: HttpRequest, rule_id: str) -> HttpResponse:
    """Switch a rule on or off without touching the rest (its states stay: switched back on, it
    counts on from where it was)."""
    access.require_admin(request.user)
    rule = _get(rule_id)
    rule.enabled = flag(body(request), "enabled")
    rule.save(update_fields=["enabled", "updated_at"])
    return done(request, {"id": rule.pk, "enabled": rule.enabled}, reverse("console:signal-rules"))
