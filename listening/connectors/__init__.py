"""The connector registry: kind -> class. The only place that knows every source kind."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from listening.connectors import icons
from listening.connectors.base import BaseConnector, Presentation

_REGISTRY: dict[str, str] = {
    "telegram": "listening.connectors.telegram.TelegramConnector",
    "meta": "listening.connectors.meta.MetaConnector",
    "slack": "listening.connectors.slack.SlackConnector",
    "webhook": "listening.connectors.webhook.GenericWebhookConnector",
    "rss": "listening.connectors.rss.FeedConnector",
    "import": "listening.connectors.fileimport.FileImportConnector",
    "twilio": "listening.connectors.twilio.TwilioConnector",
    "mastodon": "listening.connectors.mastodon.MastodonConnector",
    "email": "listening.connectors.email.EmailConnector",
    "reddit": "listening.connectors.reddit.RedditConnector",
    "x": "listening.connectors.x.XConnector",
    "google_play": "listening.connectors.google_play.GooglePlayConnector",
    "app_store": "listening.connectors.app_store.AppStoreConnector",
}


class UnknownConnectorKind(LookupError):
    pass


@cache
def get_connector_class(kind: str) -> type[BaseConnector]:
    try:
        dotted = _REGISTRY[kind]
    except KeyError:
        raise UnknownConnectorKind(f"no connector kind {kind!r}") from None
    module_name, class_name = dotted.rsplit(".", 1)
    return getattr(import_module(module_name), class_name)


def connector_kinds() -> list[str]:
    return sorted(_REGISTRY)


# A channel no connector declares (a file import's or a webhook sender's own name for it).
_UNKNOWN_COLOUR = "#667085"


@cache
def _presentations() -> tuple[dict[str, Presentation], dict[str, Presentation]]:
    """(by channel, by kind), built once from the connector classes' own attributes."""
    by_channel: dict[str, Presentation] = {}
    by_kind: dict[str, Presentation] = {}
    for kind in connector_kinds():
        cls = get_connector_class(kind)
        description = cls.description or (cls.__doc__ or "").strip().split("\n")[0]
        by_kind[kind] = Presentation(kind, cls.label, cls.icon, cls.colour, description, kind)
        for channel in cls.channels:
            # The first connector to declare a channel names it (twilio and meta both carry WhatsApp).
            by_channel.setdefault(channel.key, Presentation(channel.key, channel.label, channel.icon or cls.icon,
                                                            channel.colour or cls.colour, description, kind))
    return by_channel, by_kind


def presentation(key: str) -> Presentation:
    """How people see a channel (Message.channel) or, failing that, a connector kind: its name,
    icon and colour. A name no connector declares still reads as words, never as a slug."""
    key = str(key or "")
    by_channel, by_kind = _presentations()
    found = by_channel.get(key) or by_kind.get(key)
    if found is not None:
        return found
    label = key.replace("_", " ").replace("-", " ").strip().capitalize() or "Unknown channel"
    return Presentation(key, label, icons.CHAT, _UNKNOWN_COLOUR)


def channel_presentations() -> list[Presentation]:
    """Every channel the connectors declare, by name: the dashboards' channel list."""
    return sorted(_presentations()[0].values(), key=lambda p: p.label.lower())
