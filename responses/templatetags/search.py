"""The console sidebar's saved views with their counts (responses.saved_views), for any page
with a sidebar: `{% load search %}{% saved_views_sidebar %}`."""

from __future__ import annotations

from django import template

from responses import saved_views

register = template.Library()


@register.inclusion_tag("console/search_views_sidebar.html", takes_context=True)
def saved_views_sidebar(context) -> dict:
    request = context["request"]
    current = request.GET.get("view", "") if request.resolver_match and \
        request.resolver_match.url_name == "search" else ""
    return {"views": saved_views.sidebar(request.user), "current_view": current}


def _presentation(channel: str):
    """The channel's name and look from the connectors' registry (listening.connectors), when this
    checkout has it; None otherwise."""
    try:
        from listening.connectors import presentation
    except ImportError:  # an older registry without presentations
        return None
    return presentation(channel)


@register.filter
def channel_label(channel: str) -> str:
    look = _presentation(channel)
    return look.label if look else (channel or "Unknown channel").replace("_", " ").capitalize()


def channel_choices() -> list[tuple[str, str]]:
    """(key, name) of every channel the connectors declare, for the channel filter."""
    try:
        from listening.connectors import channel_presentations
    except ImportError:
        from listening.connectors import connector_kinds, get_connector_class

        classes = [get_connector_class(kind) for kind in connector_kinds()]
        keys = sorted({ch.key for cls in classes for ch in getattr(cls, "channels", ())})
        return [(key, channel_label(key)) for key in keys]
    return [(p.key, p.label) for p in channel_presentations()]
