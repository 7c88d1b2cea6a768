"""Provider answers are read with a cap as they stream in (listening.http.read_capped): a larger
one is refused before it is held, whatever its Content-Length says or its compression hides."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Iterator

import pytest

from listening import http
from listening.connectors.rss import MAX_FEED_BYTES
from listening.models import Health
from listening.polling import poll_connector
from tests.fakes.http import Reply

MB = 1024 * 1024


class Generated:
    """A body made chunk by chunk as the fake sends it, counting what it made."""

    def __init__(self, total: int, head: bytes = b"", filler: bytes = b"x" * 65536) -> None:
        self.total, self.head, self.filler, self.made = total, head, filler, 0

    def __iter__(self) -> Iterator[bytes]:
        self.made += len(self.head)
        yield self.head
        while self.made < self.total:
            self.made += len(self.filler)
            yield self.filler


def test_outbound_answer_under_the_cap_is_read_whole_and_decoded(fake_provider):
    document = {"entries": ["a" * 1000] * 50}
    compressed = gzip.compress(json.dumps(document).encode())
    fake_provider.route("GET", "/small")(lambda r: Reply(200, compressed, {
        "Content-Encoding": "gzip", "Content-Type": "application/json", "ETag": '"v7"'}))
    response = http.request("GET", fake_provider.url + "/small", max_bytes=64 * 1024)
    assert response.json() == document
    assert response.headers["etag"] == '"v7"'
    assert "content-encoding" not in response.headers  # the body held is the decoded one


def test_outbound_declared_length_over_the_cap_is_refused_before_reading(fake_provider):
    body = Generated(400 * MB)
    fake_provider.route("GET", "/declared")(lambda r: Reply(200, headers={"Content-Length": str(400 * MB)},
                                                            stream=body))
    with pytest.raises(http.ResponseTooLarge, match=f"declares {400 * MB} bytes, over the {MB}-byte limit"):
        http.request("GET", fake_provider.url + "/declared", max_bytes=MB)


def test_outbound_chunked_answer_is_refused_at_the_cap(fake_provider):
    body = Generated(400 * MB)
    fake_provider.route("GET", "/chunked")(lambda r: Reply(200, stream=body))
    with pytest.raises(http.ResponseTooLarge, match=f"too large: over the {MB}-byte limit"):
        http.request("GET", fake_provider.url + "/chunked", max_bytes=MB)
    assert body.made < 100 * MB  # the reading stopped; the server's writes failed soon after


def test_outbound_compressed_bomb_is_refused_by_its_decoded_size(fake_provider):
    bomb = gzip.compress(b"0" * (20 * MB))
    assert len(bomb) < 100 * 1024  # small on the wire: a cap on wire bytes would let it through
    fake_provider.route("GET", "/bomb")(lambda r: Reply(200, bomb, {"Content-Encoding": "gzip"}))
    with pytest.raises(http.ResponseTooLarge, match="too large"):
        http.request("GET", fake_provider.url + "/bomb", max_bytes=MB)


def test_rss_feed_of_400_mb_fails_the_poll_as_too_large_with_flat_memory(make_connector, fake_provider):
    head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title>'
    item = b"<item><guid>same</guid><title>" + b"y" * 65000 + b"</title></item>"
    feed = Generated(400 * MB, head, item)
    fake_provider.route("GET", "/huge.xml")(lambda r: Reply(200, headers={"Content-Type": "application/rss+xml"},
                                                            stream=feed))
    cursor = {"etag": '"before"'}
    connector = make_connector("rss", config={"url": fake_provider.url + "/huge.xml"}, cursor=cursor)
    # Measured in this process with tracemalloc: it counts every Python allocation (httpx's
    # chunks, the joined body, the fake's writes) and its peak is this poll's alone, where the
    # process's VmHWM would still show whatever earlier tests peaked at.
    tracemalloc.start()
    try:
        outcome = poll_connector(connector.pk, force=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "too large" in outcome.error and f"over the {MAX_FEED_BYTES}-byte limit" in outcome.error
    connector.refresh_from_db()
    assert "too large" in connector.last_error
    assert connector.health != Health.OK and connector.consecutive_failures == 1
    assert connector.cursor == cursor
    assert feed.made < 100 * MB
    # The cap (10 MB) plus a chunk, plus the joined copy at most: far from the 400 MB a
    # read-then-check download holds.
    assert peak < 40 * MB, f"peak {peak / MB:.0f} MB"
