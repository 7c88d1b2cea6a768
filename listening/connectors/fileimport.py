"""File import: historic messages from CSV or JSONL exports (a previous tool, a data set).

Nothing arrives by webhook or polling; `python manage.py import_messages` (listening.importing)
streams a file through the same ingestion as every other source. The connector's config keeps
the column mapping and channel used when a run does not give its own, so a recurring export is
imported the same way each time. There is nothing to call for "test connection", and no
backfill: older messages are imported from a file like any other.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from listening.connectors import icons
from listening.connectors.base import BaseConnector, Channel, OutboundReply, PollResult
from listening.exceptions import ConfigInvalid, NotSupported

CHANNEL_RE = re.compile(r"^[a-z0-9_\-]{1,40}$")
# Message fields a column can be mapped to (see listening.importing for their meaning).
FIELDS = (
    "id", "text", "author", "author_name", "author_handle", "sent_at", "thread", "in_reply_to",
    "responses", "direction", "subject", "url",
)


class FileImportConnector(BaseConnector):
    kind = "import"
    label = "File import (CSV, JSONL)"
    channel = "import"
    description = "Historic messages from CSV or JSONL exports: a previous tool, a data set."
    icon = icons.INBOX_TRAY
    colour = "#475467"
    channels = (Channel("import", "Imported"),)
    can_reply = False
    config_defaults = {"channel": "import", "mapping": {}, "date_format": ""}
    config_help = {
        "channel": "The channel imported messages are filed under when a row names none (a-z, 0-9, _ and -).",
        "mapping": "Which column holds each message field, as field -> column (CSV header or JSONL key, dotted for "
                   f"nested keys); fields: {', '.join(FIELDS)}.",
        "date_format": "A strptime format for sent_at, like %d/%m/%Y %H:%M; empty reads ISO 8601, Unix times, "
                       "RFC 2822 and Twitter's export format.",
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        validate_channel(config["channel"])
        validate_mapping(config["mapping"])
        if not isinstance(config["date_format"], str):
            raise ConfigInvalid("date_format must be a strptime format string")
        return config

    def check_connection(self) -> str:
        self.validate_config(dict(self.row.config or {}))
        return ("Nothing to call: a file import reads the CSV or JSONL files you give it (python manage.py "
                f"import_messages <file> --connector {self.row.slug}). The column mapping is valid.")

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("a file import has no source to fetch from: import a file of the older messages")

    def send(self, reply: OutboundReply) -> str:
        raise NotSupported("imported messages cannot be answered: reply on a live connector")


def validate_channel(channel: Any) -> str:
    if not isinstance(channel, str) or not CHANNEL_RE.match(channel):
        raise ConfigInvalid("channel must be 1-40 of a-z, 0-9, _ and -")
    return channel


def validate_mapping(mapping: Any) -> dict[str, str]:
    """A mapping of message field -> column (CSV header or JSONL key, dotted for nesting)."""
    if not isinstance(mapping, dict):
        raise ConfigInvalid("mapping must be an object of field -> column")
    unknown = set(mapping) - set(FIELDS)
    if unknown:
        raise ConfigInvalid(f"unknown fields in mapping: {', '.join(sorted(unknown))}; known: {', '.join(FIELDS)}")
    for field, column in mapping.items():
        if not isinstance(column, str) or not column:
            raise ConfigInvalid(f"mapping for {field} must name a column")
    return mapping
