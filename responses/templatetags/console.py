"""Template helpers of the console."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils.translation import get_language_info

register = template.Library()


@register.filter
def web_url(value: str) -> str:
    """The URL if it is plain http(s), else empty: a `javascript:` or `data:` URL from a source
    must never become a link."""
    value = (value or "").strip()
    return value if value.lower().startswith(("https://", "http://")) else ""


@register.filter
def duration(value: timedelta | None) -> str:
    """A compact duration: 45s, 12m, 3h 5m, 2d 4h."""
    if value is None:
        return ""
    seconds = max(0, int(value.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h {minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{days}d {hours % 24}h" if hours % 24 else f"{days}d"


@register.simple_tag
def time_between(start, end) -> str:
    if not start or not end:
        return ""
    return duration(end - start)


@register.filter
def lane_name(value: str) -> str:
    """A lane as people say it (Issue, Praise, Ambivalence, Needs a look, Spam), never its slug."""
    from learning.models import Lane

    try:
        return str(Lane(value).label)
    except ValueError:
        return (value or "").replace("_", " ").capitalize()


@register.filter
def language_name(code: str) -> str:
    """A language code's English name (pt -> Portuguese), or the code when Django knows no name
    for it (the models tag more languages than Django translates into)."""
    code = (code or "").strip().lower()
    if not code or code == "und":
        return "unknown language"
    for candidate in (code, code.split("-")[0]):
        try:
            return str(get_language_info(candidate)["name"])
        except KeyError:
            continue
    return code
