"""RSS and Atom feeds: review sites, app-store review feeds, forums and blogs. Read-only.

Each poll is a conditional GET (If-None-Match / If-Modified-Since from the validators the last
response carried, kept in the cursor), so an unchanged feed costs one 304 and stores nothing.
Entries are deduped by their id through the (connector, external_id) constraint, so a feed that
ignores validators and re-serves old entries stores nothing twice either. Each entry is its own
conversation, except an Atom entry that says it answers another (RFC 4685 `thr:in-reply-to`).

"Test connection" fetches the feed and says its title and entry count. Backfill is one page: the
entries the feed serves now that were published at or after the date asked (a feed keeps only
its latest entries, so nothing older can be fetched); undated entries are left to polling.
"""

from __future__ import annotations

import hashlib
import io
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from listening import http, times
from listening.connectors import icons
from listening.connectors.base import BaseConnector, Channel, InboundAuthor, InboundMessage, OutboundReply, PollResult
from listening.exceptions import ConfigInvalid, NotSupported, ProviderRejected
from listening.htmltext import html_to_text
from listening.sanitize import clean_text

MAX_REDIRECTS = 5
MAX_FEED_BYTES = 10 * 1024 * 1024
MAX_ID = 255


class FeedConnector(BaseConnector):
    kind = "rss"
    label = "RSS / Atom feed"
    channel = "feed"
    description = "RSS and Atom feeds: review sites, forums and blogs. Listens only."
    icon = icons.FEED
    colour = "#c2410c"
    channels = (Channel("feed", "Feed"),)
    polls = True
    can_reply = False
    # A feed is overheard by default: news and posts about the brand, not sent to it. A feed of
    # reviews is sent to it: its admin ticks "addressed".
    addressed = False
    config_defaults = {"url": "", "channel": "feed", "max_entries": 200, "addressed": False}
    config_help = {
        "url": "The feed's http(s) address: the site's RSS or Atom link (often behind an RSS icon, or in the page's "
               '<link rel="alternate"> tag).',
        "channel": "The channel its messages are filed under, like appstore, reviews or forum (a-z, 0-9, _ and -).",
        "max_entries": "At most this many entries are read per fetch, 1 to 10000.",
        "addressed": "Its entries are written to the brand (reviews, a support forum): one the models cannot place "
                     "goes to triage for a person to look at, not to noise.",
    }
    supports_backfill = True

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        if urlsplit(str(config["url"])).scheme not in {"http", "https"}:
            raise ConfigInvalid("url must be an http(s) feed URL")
        if not isinstance(config["max_entries"], int) or not 1 <= config["max_entries"] <= 10_000:
            raise ConfigInvalid("max_entries must be an integer from 1 to 10000")
        return config

    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """Fetch the feed unless it is unchanged since the validators in `cursor`."""
        fetched = self._fetch(cursor)
        if fetched is None:
            return PollResult(messages=[], cursor=cursor)
        response, parsed = fetched
        entries = parsed.entries[: int(self.config["max_entries"])]
        ids_here = {_entry_id(e) for e in entries}
        messages = [self._message(entry, ids_here) for entry in entries]
        validators = (("etag", response.headers.get("etag")), ("modified", response.headers.get("last-modified")))
        # A damaged document (bozo) that still yielded entries may have lost some: keep no
        # validators, so the next poll fetches it again instead of getting a 304.
        new_cursor = {} if parsed.bozo else {key: value for key, value in validators if value}
        return PollResult(messages=messages, cursor=new_cursor)

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """The entries served now that were published at or after `since`: one page, then done."""
        if state.get("done") is True:
            return PollResult(messages=[], cursor={"done": True})
        fetched = self._fetch({})
        entries = fetched[1].entries[: int(self.config["max_entries"])] if fetched else []
        ids_here = {_entry_id(e) for e in entries}
        recent = [e for e in entries if _dated(e) and _when(e) >= since]
        return PollResult(messages=[self._message(entry, ids_here) for entry in recent], cursor={"done": True})

    def check_connection(self) -> str:
        """Fetch the feed (no validators, so never a 304) and say what it is; stores nothing."""
        self.validate_config(dict(self.row.config or {}))
        fetched = self._fetch({})
        if fetched is None:
            raise ProviderRejected("the feed answered 304 Not Modified to a request without validators")
        feed = fetched[1].feed
        title = clean_text(_text(feed.get("title", ""), feed.get("title_detail")), 200) or "an untitled feed"
        count = len(fetched[1].entries)
        return f'Reached "{title}": {count} entr{"y" if count == 1 else "ies"} (none stored by this test).'

    def _fetch(self, cursor: dict[str, Any]) -> tuple[Any, Any] | None:
        """GET the feed (conditional on the cursor's validators) and parse it; None when unchanged."""
        headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5"}
        if cursor.get("etag"):
            headers["If-None-Match"] = cursor["etag"]
        if cursor.get("modified"):
            headers["If-Modified-Since"] = cursor["modified"]
        response = self._get(str(self.config["url"]), headers)
        if response.status_code == 304:
            return None
        # A file object, never bytes or str: feedparser treats a string as a URL or a local
        # path to open, which a hostile feed body must not be able to choose.
        parsed = feedparser.parse(
            io.BytesIO(response.content),
            response_headers={"content-type": response.headers.get("content-type", ""),
                              "content-location": str(response.url)},
        )
        if not parsed.entries and (parsed.bozo or not parsed.get("version")):
            error = parsed.get("bozo_exception")
            detail = f"{type(error).__name__}: {error}" if error else "no RSS or Atom elements found"
            raise ProviderRejected(f"not a parseable RSS or Atom feed: {detail}"[:500])
        return response, parsed

    def _get(self, url: str, headers: dict[str, str]):
        # Redirects are followed by hand so every hop goes through http.request's URL guard.
        for _ in range(MAX_REDIRECTS + 1):
            # Read with the cap as it streams in: a larger feed is refused before it is held.
            response = http.request("GET", url, headers=headers, max_bytes=MAX_FEED_BYTES)
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                return response
            url = urljoin(url, location)
        raise ProviderRejected(f"more than {MAX_REDIRECTS} redirects")

    def _message(self, entry: Any, ids_here: set[str]) -> InboundMessage:
        external_id = _entry_id(entry)
        parent = _in_reply_to(entry)
        # A reply to an entry of this feed joins the parent's thread (ingest finds it); a reply
        # to something we may never see is grouped under the id of what it answers.
        thread = parent if parent and parent not in ids_here else ""
        title = _text(entry.get("title", ""), entry.get("title_detail"))
        body_detail = (entry.get("content") or [None])[0] or entry.get("summary_detail")
        body = _text(body_detail.get("value", "") if body_detail else entry.get("summary", ""), body_detail)
        return InboundMessage(
            external_id=external_id,
            text="\n\n".join(part for part in (title, body) if part),
            author=self._author(entry),
            sent_at=_when(entry),
            channel=str(self.config["channel"]),
            thread_id=thread,
            parent_external_id=parent,
            subject=title,
            url=entry.get("link", ""),
            raw=_jsonable(entry),
        )

    def _author(self, entry: Any) -> InboundAuthor:
        detail = entry.get("author_detail") or {}
        name = detail.get("name") or entry.get("author") or ""
        href = detail.get("href") or ""
        href = href if urlsplit(href).scheme in {"http", "https"} else ""
        email = detail.get("email") or ""
        external_id = href or email or name or urlsplit(str(self.config["url"])).hostname or "feed"
        return InboundAuthor(
            external_id=_fit(external_id), display_name=name, profile_url=href, email=email
        )

    def send(self, reply: OutboundReply) -> str:
        raise NotSupported("feeds are read-only: answer on the site itself")


def _entry_id(entry: Any) -> str:
    value = entry.get("id") or entry.get("link")
    if not value:
        seed = f"{entry.get('title', '')}\x00{entry.get('published', entry.get('updated', ''))}"
        value = "sha256:" + hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()
    return _fit(str(value))


def _fit(value: str) -> str:
    """Ids longer than the column are replaced by a stable digest instead of being cut, which
    could make two different ids collide."""
    if len(value) <= MAX_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def _in_reply_to(entry: Any) -> str:
    # feedparser names the element after the feed's own prefix for the namespace (thr_, t_...).
    for key, value in entry.items():
        if key.endswith("_in-reply-to") and isinstance(value, dict) and value.get("ref"):
            return _fit(str(value["ref"]))
    return ""


def _text(value: str, detail: Any) -> str:
    content_type = (detail or {}).get("type", "text/html")
    return html_to_text(value) if "html" in content_type else value.strip()


def _dated(entry: Any) -> bool:
    return bool(entry.get("published_parsed") or entry.get("updated_parsed"))


def _when(entry: Any) -> datetime:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if parsed:  # feedparser gives UTC; a year it cannot represent is refused in listening.times
        try:
            return times.source_time(datetime(*parsed[:6], tzinfo=UTC))
        except (TypeError, ValueError):
            return times.received_instead(entry.get("published") or entry.get("updated"), "not a date")
    return datetime.now(tz=UTC)


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return None
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
