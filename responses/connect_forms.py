"""The connect form of a source kind, generated from its connector class: one field per config
key (typed by its default), one masked field per credential, and the connector's own
validate_config as the final word.

Credentials never go back to the browser: their inputs render empty, a blank input keeps what is
saved, and a "remove" box deletes it. Secrets we generate (a webhook's shared secret) are shown
once, by the view, right after they are made.
"""

from __future__ import annotations

import secrets
from typing import Any

from django import forms

from listening.connectors.base import BaseConnector
from listening.exceptions import ConfigInvalid
from listening.models import Connector

CONFIG = "cfg_"
CREDENTIAL = "cred_"
FORGET = "forget_"
MAX_SECRET_CHARS = 20_000  # a service-account JSON key or a PEM private key fits
MAX_LIST_ITEMS = 200
MULTILINE_SECRETS = ("private_key", "_json", "_pem")


def new_secret() -> str:
    """A shared secret for the admin to paste into the provider's console (256 bits)."""
    return secrets.token_urlsafe(32)


class ListField(forms.CharField):
    """A list of strings, one per line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(str(v) for v in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):  # a JSON body sends the list itself
            value = "\n".join(str(v) for v in value)
        lines = [line.strip() for line in (super().to_python(value) or "").splitlines()]
        lines = [line for line in lines if line]
        if len(lines) > MAX_LIST_ITEMS:
            raise forms.ValidationError(f"at most {MAX_LIST_ITEMS} lines")
        return lines


ACRONYMS = {"url": "URL", "api": "API", "id": "ID", "imap": "IMAP", "smtp": "SMTP", "json": "JSON", "sid": "SID",
            "oauth": "OAuth", "pem": "PEM", "ssl": "SSL", "tls": "TLS", "utc": "UTC"}


def label_of(key: str) -> str:
    """"api_base" -> "API base", "client_id" -> "Client ID"."""
    words = [ACRONYMS.get(word, word) for word in key.split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _config_field(key: str, default: Any, help_text: str) -> forms.Field:
    label = label_of(key)
    common = {"label": label, "help_text": help_text, "initial": default}
    if isinstance(default, bool):
        return forms.BooleanField(required=False, **common)
    if isinstance(default, int):
        return forms.IntegerField(min_value=-(2**31), max_value=2**31, **common)
    if isinstance(default, float):
        return forms.FloatField(**common)
    if isinstance(default, list):
        return ListField(required=False, max_length=50_000, **common)
    if isinstance(default, dict):
        return forms.JSONField(required=False, **common)
    return forms.CharField(required=False, max_length=2000, strip=True, **common)


def _secret_field(name: str, help_text: str, saved: bool) -> forms.Field:
    multiline = any(part in name for part in MULTILINE_SECRETS)
    placeholder = "saved: leave blank to keep it" if saved else "not set"
    attrs = {"autocomplete": "new-password", "placeholder": placeholder, "spellcheck": "false"}
    widget = (forms.Textarea(attrs={**attrs, "rows": 3}) if multiline
              else forms.PasswordInput(attrs=attrs, render_value=False))
    return forms.CharField(required=False, max_length=MAX_SECRET_CHARS, strip=False, widget=widget,
                           label=label_of(name), help_text=help_text)


def connect_form(backend_class: type[BaseConnector], connector: Connector | None = None,
                 data: Any = None) -> forms.Form:
    """A bound (with `data`) or unbound form for a new or existing connector of this kind."""
    saved = set(connector.credentials) if connector is not None else set()
    fields: dict[str, forms.Field] = {
        "name": forms.CharField(max_length=120, help_text="Shown to agents and on dashboards."),
        "slug": forms.SlugField(max_length=80, help_text="Part of the webhook URL; letters, digits, '-' and '_'."),
    }
    if backend_class.polls:
        fields["poll_interval_seconds"] = forms.IntegerField(
            min_value=15, max_value=86_400, initial=60, label="Poll every (seconds)",
            help_text="How often CXM asks the provider for new messages.")
    for key, default in backend_class.config_defaults.items():
        fields[CONFIG + key] = _config_field(key, default, backend_class.config_help.get(key, ""))
    for name in backend_class.credential_fields:
        fields[CREDENTIAL + name] = _secret_field(name, backend_class.credential_help.get(name, ""), name in saved)
        if name in saved:
            fields[FORGET + name] = forms.BooleanField(required=False, label=f"Remove the saved {name}")
    form_class = type(f"{backend_class.__name__}Form", (_ConnectForm,), dict(fields))
    initial = None
    if connector is not None:
        initial = {"name": connector.name, "slug": connector.slug,
                   "poll_interval_seconds": connector.poll_interval_seconds,
                   **{CONFIG + k: v for k, v in {**backend_class.config_defaults, **connector.config}.items()}}
    return form_class(data=data, initial=initial, backend_class=backend_class, connector=connector)


class _ConnectForm(forms.Form):
    def __init__(self, *args, backend_class: type[BaseConnector], connector: Connector | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend_class = backend_class
        self.connector = connector
        self.config: dict[str, Any] = {}

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        taken = Connector.objects.filter(slug=slug)
        if self.connector is not None:
            taken = taken.exclude(pk=self.connector.pk)
        if taken.exists():
            raise forms.ValidationError("another source already uses this slug")
        return slug

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        config = {key: cleaned[CONFIG + key] for key in self.backend_class.config_defaults if CONFIG + key in cleaned}
        if len(config) == len(self.backend_class.config_defaults):
            try:
                self.config = self.backend_class.validate_config(config)
            except ConfigInvalid as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned

    def credentials(self, current: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The credentials to save, and the secrets generated now (to show once)."""
        result = dict(current)
        for name in self.backend_class.credential_fields:
            if self.cleaned_data.get(FORGET + name):
                result.pop(name, None)
            value = self.cleaned_data.get(CREDENTIAL + name, "")
            if value.strip():
                result[name] = value.strip()
        made = {name: new_secret() for name in self.backend_class.generated_credentials
                if not result.get(name)}
        return {**result, **made}, made

    def apply(self, connector: Connector) -> dict[str, str]:
        """Copy the form onto the row (not saved); the secrets generated now."""
        connector.name = self.cleaned_data["name"]
        connector.slug = self.cleaned_data["slug"]
        if "poll_interval_seconds" in self.cleaned_data:
            connector.poll_interval_seconds = self.cleaned_data["poll_interval_seconds"]
        connector.config = self.config
        current = connector.credentials if connector.pk else {}
        saved, made = self.credentials(current)
        connector.credentials = saved
        return made

    def config_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(CONFIG)]

    def credential_fields(self) -> list[tuple[forms.BoundField, forms.BoundField | None]]:
        return [(self[name], self[FORGET + name[len(CREDENTIAL):]] if FORGET + name[len(CREDENTIAL):] in self.fields
                 else None) for name in self.fields if name.startswith(CREDENTIAL)]
