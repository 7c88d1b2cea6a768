"""The connector registry: kind -> class. The only place that knows every source kind."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from listening.connectors.base import BaseConnector

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
