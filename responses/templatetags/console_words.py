"""Words and badges agents read instead of slugs and scores. A channel badge is the icon, colour
and name its connector class declares (listening.connectors.presentation), so no template or
stylesheet lists channels."""

from __future__ import annotations

from django import template

from listening.connectors import presentation

register = template.Library()


@register.inclusion_tag("console/includes/channel.html")
def channel_badge(channel: str, show_name: bool = True) -> dict:
    """`{% channel_badge case.channel %}`: the channel's icon and name; `False` for the icon only
    (the name stays in the title and for screen readers)."""
    return {"look": presentation(channel), "show_name": show_name}


@register.filter
def channel_name(channel: str) -> str:
    return presentation(channel).label


# A case's priority (0-1) in words; the number stays in the title and the "why".
PRIORITY_WORDS = ((0.75, "Urgent"), (0.5, "High"), (0.25, "Normal"), (0.0, "Low"))


@register.filter
def priority_name(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return next((word for floor, word in PRIORITY_WORDS if number >= floor), "Low")


@register.filter
def role_name(value: str) -> str:
    """A console role as people say it (Brand manager), never its slug."""
    from responses.models import Role

    try:
        return str(Role(value).label)
    except ValueError:
        return (value or "").replace("_", " ").capitalize()
