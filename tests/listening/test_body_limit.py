"""cxm.asgi refuses a body over the limit as its chunks arrive (cxm.body_limit.BodyLimitMiddleware),
with a 413 and a reason, before Django has buffered it: what keeps a streaming ASGI server
(uvicorn) flat. Daphne, which buffers before the application runs, is tested in
tests/reliability/test_body_limit_memory.py. The real application is driven chunk by chunk."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from cxm.asgi import application


def _scope(path: str, headers: list[tuple[bytes, bytes]] = ()) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}


@async_to_sync
async def _exchange(scope: dict, chunks: list[bytes], *, finish: bool = True) -> tuple[int, dict, int]:
    """Send `chunks` (more_body on all but the last when `finish`) while watching for an early
    answer; returns (status, JSON body, chunks the application took before answering)."""
    talk = ApplicationCommunicator(application, scope)
    taken = 0
    for index, chunk in enumerate(chunks):
        more = not finish or index < len(chunks) - 1
        await talk.send_input({"type": "http.request", "body": chunk, "more_body": more})
        taken += 1
        if not await talk.receive_nothing(timeout=0.2, interval=0.01):
            break  # answered before the body ended
    start = await talk.receive_output(10)
    assert start["type"] == "http.response.start"
    body = b""
    while True:
        message = await talk.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await talk.wait(10)
    return start["status"], json.loads(body), taken


@pytest.mark.django_db
def test_body_limit_refuses_a_chunked_webhook_body_at_the_limit(settings):
    settings.WEBHOOK_MAX_BYTES = 2048
    status, body, taken = _exchange(_scope("/hooks/1/"), [b"x" * 1024] * 10, finish=False)
    assert (status, body) == (413, {"error": "payload_too_large", "reason": "body is over the 2048-byte limit"})
    assert taken == 3  # the chunk that crossed the limit was the last one read


@pytest.mark.django_db
def test_body_limit_refuses_a_declared_length_before_reading_the_body(settings):
    settings.WEBHOOK_MAX_BYTES = 2048
    status, body, taken = _exchange(_scope("/hooks/1/", [(b"content-length", b"300000000")]), [b"x" * 1024])
    assert status == 413 and body["reason"] == "body is over the 2048-byte limit"


@pytest.mark.django_db
def test_body_limit_lets_a_body_under_the_limit_reach_the_view(settings):
    settings.WEBHOOK_MAX_BYTES = 2048
    status, body, _ = _exchange(_scope("/hooks/999999/"), [b"{}", b" " * 1000])
    assert status == 404 and body["error"] != "payload_too_large"  # the webhook view answered


@pytest.mark.django_db
def test_body_limit_outside_hooks_is_the_request_limit(settings):
    settings.WEBHOOK_MAX_BYTES = 2048
    settings.REQUEST_MAX_BYTES = 8192
    status, body, taken = _exchange(_scope("/healthz"), [b"x" * 4096] * 5, finish=False)
    assert status == 413 and body["reason"] == "body is over the 8192-byte limit" and taken == 3
