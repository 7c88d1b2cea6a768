"""Spike alerts in the console (see insight.alerts for the method): the list, one alert with the
numbers behind it in words and the messages that made it, acknowledging, and the admins' settings.

Supervisors, brand managers and admins see the alerts of their teams (admins: all); plain agents
get 403, and another team's alert does not exist for anyone (404)."""

from __future__ import annotations

import math

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from insight import alerts as alert_actions, dashboards as insight
from insight.models import Alert, AlertSettings
from learning.models import Classification
from listening import http
from listening.exceptions import ProviderRejected, ProviderUnavailable
from listening.models import Message
from responses import access
from responses.exceptions import CaseNotFound, InvalidRequest, NotAllowed
from responses.models import Case, Role
from responses.views.base import body, console_context, console_view, done, object_id, wants_json

PAGE_SIZE = 50
MAX_ADDRESSES = 20
MAX_HISTORY_HOURS = 144  # six days: the baseline holds 7, so more could never be met
STATUSES = {"", Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED}


def require_viewer(user) -> None:
    if not insight.can_view(user):
        raise NotAllowed("alerts are for supervisors, brand managers and admins")


def visible_alerts(user):
    return Alert.objects.filter(team_id__in=access.team_ids(user))


def get_alert(user, alert_id) -> Alert:
    alert = visible_alerts(user).select_related("team", "acknowledged_by").filter(
        pk=object_id(alert_id, "alert")).first()
    if alert is None:
        raise CaseNotFound("no such alert")
    return alert


def alert_json(alert: Alert) -> dict:
    return {**alert_actions.summary(alert), "created_at": alert.created_at.isoformat(),
            "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
            "notified_at": alert.notified_at.isoformat() if alert.notified_at else None}


def _page_context(request: HttpRequest) -> dict:
    return {**console_context(request), "is_admin": access.role_of(request.user) == Role.ADMIN}


# --- List and detail -----------------------------------------------------------------------------
@console_view("GET")
def alert_list(request: HttpRequest) -> HttpResponse:
    require_viewer(request.user)
    status = request.GET.get("status", "")
    if status not in STATUSES:
        raise InvalidRequest("status must be open or acknowledged")
    alerts = visible_alerts(request.user).select_related("team").order_by("-created_at", "-id")
    open_count = alerts.filter(status=Alert.Status.OPEN).count()
    if status:
        alerts = alerts.filter(status=status)
    page = Paginator(alerts, PAGE_SIZE).get_page(request.GET.get("page"))
    if wants_json(request):
        return JsonResponse({"alerts": [alert_json(a) for a in page.object_list], "open_count": open_count,
                             "page": page.number, "pages": page.paginator.num_pages})
    for alert in page.object_list:
        alert.words = alert_actions.describe(alert, when="in an hour")
    return render(request, "insight/alerts_list.html",
                  {**_page_context(request), "page": page, "status": status, "open_count": open_count})


@console_view("GET")
def alert_detail(request: HttpRequest, alert_id: str) -> HttpResponse:
    require_viewer(request.user)
    alert = get_alert(request.user, alert_id)
    messages = messages_behind(request.user, alert)
    if wants_json(request):
        return JsonResponse({"alert": {**alert_json(alert), "detail": alert.detail}, "messages": [
            {"id": m.pk, "sent_at": m.sent_at.isoformat(), "channel": m.channel, "text": m.text,
             "sentiment": m.sentiment, "case_id": m.case_id} for m in messages]})
    return render(request, "insight/alerts_detail.html", {
        # Not "messages": that name is the flash messages' in base.html.
        **_page_context(request), "alert": alert, "explanation": explain(alert), "alert_messages": messages,
        "hidden_count": len(alert.message_ids) - len(messages),
    })


def messages_behind(user, alert: Alert) -> list[Message]:
    """The alert's messages that this user may read now (access checked again: a team may have
    lost a connector since), newest first, each with its current sentiment and visible case."""
    teams = access.team_ids(user)
    connectors = access.connector_ids(user)
    ids = [i for i in alert.message_ids if isinstance(i, int)]
    messages = list(Message.objects.filter(pk__in=ids, connector_id__in=connectors)
                    .select_related("author").order_by("-sent_at", "-id"))
    cases = dict(Case.objects.filter(conversation_id__in={m.conversation_id for m in messages}, team_id__in=teams)
                 .values_list("conversation_id", "pk"))
    sentiments = dict(Classification.objects.filter(message_id__in=[m.pk for m in messages], is_current=True)
                      .values_list("message_id", "sentiment"))
    for message in messages:
        message.case_id = cases.get(message.conversation_id)
        message.sentiment = sentiments.get(message.pk, "")
    return messages


def _n(value, digits: int = 1) -> str:
    """A number for people: thousands separated, no trailing zeros (10, 3.16, 1,680)."""
    if not isinstance(value, int | float):
        return "?"
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def explain(alert: Alert) -> list[str]:
    """The method's numbers for this alert, in sentences."""
    d = alert.detail or {}
    end = alert.window_end.strftime("%H:%M UTC")
    lines = [alert_actions.describe(alert, when=f"in the hour to {end}") + "."]
    threshold, hours = _n(d.get("threshold")), d.get("baseline_hours", alert_actions.BASELINE_HOURS)
    if alert.kind == Alert.Kind.VOLUME:
        mad = d.get("mad", 0.0)
        lines += [
            f"Usual: the median of the {hours} hourly counts of the 7 days before, or since the team's first "
            f"message when that is later ({_n(d.get('baseline_total'), 0)} messages in all).",
            f"Spread: median absolute deviation {_n(mad, 2)}, so a robust standard deviation of "
            f"{_n(alert_actions.MAD_TO_SD * mad, 2)}; the Poisson floor √{_n(alert.expected, 2)} is "
            f"{_n(math.sqrt(max(alert.expected, 0)), 2)}; the scale is the largest of the two (and 1): "
            f"{_n(d.get('scale'), 2)}.",
            f"z = ({_n(alert.observed)} − {_n(alert.expected)}) / {_n(d.get('scale'), 2)} = {_n(alert.score, 2)}; "
            f"an alert needs z ≥ {threshold}.",
        ]
    else:
        lines += [
            f"Usual share: ({_n(d.get('baseline_negatives'), 0)} negative + 1) / "
            f"({_n(d.get('baseline_total'), 0)} messages + 3) over the 7 days before = {alert.expected:.1%}.",
            f"z = ({d.get('negatives', 0)} − {d.get('total', 0)} × {alert.expected:.3f}) / "
            f"√({d.get('total', 0)} × {alert.expected:.3f} × {1 - alert.expected:.3f}) = {_n(alert.score, 2)}; "
            f"an alert needs z ≥ {threshold} and a rise of at least 10 points.",
        ]
    detections = d.get("detections", 1)
    lines.append(f"Seen by {detections} detection run{'s' if detections != 1 else ''}; "
                 f"the alert keeps the peak's numbers.")
    return lines


@console_view("POST")
def alert_acknowledge(request: HttpRequest, alert_id: str) -> HttpResponse:
    require_viewer(request.user)
    alert = alert_actions.acknowledge(get_alert(request.user, alert_id), request.user)
    return done(request, {"alert": alert_json(alert)}, reverse("console:alert", kwargs={"alert_id": alert.pk}))


# --- Settings (admins) ---------------------------------------------------------------------------
class AlertSettingsForm(forms.ModelForm):
    webhook_secret = forms.CharField(
        required=False, max_length=200, strip=True, label="Webhook secret",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs each POST: X-CXM-Signature: sha256=<hex HMAC-SHA256 of the body>. "
                  "Leave empty to keep the current one.")
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https", label="Webhook URL",
                                 help_text="Each alert is POSTed here as JSON.")
    clear_webhook_secret = forms.BooleanField(required=False, label="Remove the webhook secret")

    class Meta:
        model = AlertSettings
        fields = ["enabled", "sensitivity", "min_messages", "min_history_hours", "quiet_start", "quiet_end", "email_to",
                  "webhook_url"]
        labels = {"min_messages": "Minimum messages in the hour", "min_history_hours": "Minimum history, in hours"}
        widgets = {
            "quiet_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "quiet_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "email_to": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {"email_to": "Addresses, one per line or comma-separated.",
                      "quiet_start": "Reporting time zone. Alerts are still recorded while quiet, not pushed."}

    def clean_min_messages(self) -> int:
        value = self.cleaned_data["min_messages"]
        if not 1 <= value <= 100_000:
            raise ValidationError("between 1 and 100000")
        return value

    def clean_min_history_hours(self) -> int:
        value = self.cleaned_data["min_history_hours"]
        if not 0 <= value <= MAX_HISTORY_HOURS:
            raise ValidationError(f"between 0 and {MAX_HISTORY_HOURS} hours: the baseline looks back 7 days")
        return value

    def clean_email_to(self) -> str:
        addresses = alert_actions.email_addresses(self.cleaned_data.get("email_to", ""))
        if len(addresses) > MAX_ADDRESSES:
            raise ValidationError(f"at most {MAX_ADDRESSES} addresses")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"{address[:80]} is not an email address") from None
        return "\n".join(addresses)

    def clean_webhook_url(self) -> str:
        url = (self.cleaned_data.get("webhook_url") or "").strip()
        if not url:
            return ""
        if not url.lower().startswith(("http://", "https://")):
            raise ValidationError("the webhook URL must be http or https")
        try:
            http.guard_url(url)
        except ProviderRejected as exc:
            raise ValidationError(f"refused: {exc.reason}") from None
        except ProviderUnavailable:
            pass  # cannot resolve now; checked again on every send
        return url

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("quiet_start"), data.get("quiet_end")
        if (start is None) != (end is None):
            missing = "quiet_end" if end is None else "quiet_start"
            self.add_error(missing, "set both ends of the quiet hours, or neither")
        elif start is not None and start == end:
            self.add_error("quiet_end", "the quiet hours must not start and end at the same time")
        keeps_secret = self.instance.has_webhook_secret and not data.get("clear_webhook_secret")
        if data.get("webhook_url") and not (data.get("webhook_secret") or keeps_secret):
            self.add_error("webhook_secret", "a webhook needs a secret, so its receiver can verify each POST")
        return data

    def save(self, commit: bool = True) -> AlertSettings:
        instance = super().save(commit=False)
        if self.cleaned_data.get("webhook_secret"):
            instance.webhook_secret = self.cleaned_data["webhook_secret"]
        elif self.cleaned_data.get("clear_webhook_secret"):
            instance.webhook_secret = ""
        if commit:
            instance.save()
        return instance


def history_words(hours: int) -> str:
    """The minimum history as people say it: "72 hours (3 days)"."""
    if hours % 24 == 0 and hours:
        return f"{hours} hours ({hours // 24} day{'s' if hours != 24 else ''})"
    return f"{hours} hour{'s' if hours != 1 else ''}"


def settings_json(row: AlertSettings) -> dict:
    """The settings as the browser may see them: the webhook secret only as set or not."""
    return {
        "enabled": row.enabled, "sensitivity": row.sensitivity, "min_messages": row.min_messages,
        "min_history_hours": row.min_history_hours,
        "quiet_start": row.quiet_start.strftime("%H:%M") if row.quiet_start else None,
        "quiet_end": row.quiet_end.strftime("%H:%M") if row.quiet_end else None,
        "email_to": alert_actions.email_addresses(row.email_to), "webhook_url": row.webhook_url,
        "webhook_secret_set": row.has_webhook_secret,
    }


def _json_form_data(request: HttpRequest, row: AlertSettings) -> dict:
    """A JSON body changes only the fields it names; values must be plain scalars (or a list of
    addresses for email_to)."""
    posted = body(request)
    data = {**settings_json(row), "email_to": row.email_to, "webhook_secret": ""}
    for name, value in posted.items():
        if name == "email_to" and isinstance(value, list):
            value = "\n".join(str(v) for v in value)
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidRequest(f"{name} must be text, a number or true/false")
        data[name] = value
    return {name: ("" if value is None else value if isinstance(value, bool) else str(value))
            for name, value in data.items() if name != "webhook_secret_set"}


@console_view("GET", "POST")
def alert_settings(request: HttpRequest) -> HttpResponse:
    access.require_admin(request.user)
    row = AlertSettings.current()
    if request.method == "GET" and wants_json(request):
        return JsonResponse({"settings": settings_json(row)})
    form = None
    if request.method == "POST":
        data = _json_form_data(request, row) if request.content_type == "application/json" else request.POST
        form = AlertSettingsForm(data, instance=row)
        if form.is_valid():
            saved = form.save()
            if wants_json(request):
                return JsonResponse({"ok": True, "settings": settings_json(saved)})
            return redirect("console:alert-settings")
        if wants_json(request):
            return JsonResponse({"error": "invalid", "reason": "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()),
                "errors": {field: list(errors) for field, errors in form.errors.items()}}, status=400)
    form = form or AlertSettingsForm(instance=row)
    return render(request, "insight/alerts_settings.html",
                  {**_page_context(request), "form": form, "secret_set": row.has_webhook_secret,
                   "history": history_words(row.min_history_hours)},
                  status=400 if form.errors else 200)
