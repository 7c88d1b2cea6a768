"""The console event types on every page, for console.js (see responses.event_types)."""

from __future__ import annotations

from django import template
from django.utils.html import json_script

from responses import event_types

register = template.Library()


@register.simple_tag
def console_event_types() -> str:
    """A <script type="application/json" id="cxm-event-types"> with {"CASE_CREATED": "case.created", ...}."""
    return json_script(event_types.as_js(), "cxm-event-types")
