"""Request bodies are refused while they stream in, not after they are buffered.

Two layers, because the ASGI server decides what is held in memory before the application runs:

- `BodyLimitMiddleware` wraps the ASGI application: a declared Content-Length over the limit is a
  413 before any body is read, and the `http.request` chunks are counted as they arrive, so a
  chunked body is refused at the limit. Under a server that streams (uvicorn: it stops reading
  the socket until the application asks for more) that alone keeps memory flat.
- Daphne does not stream: Twisted spools the whole body to a temporary file, then Daphne reads
  the file back into the application's queue in one loop, before the application reads any of
  it, so a 300 MB body is 300 MB of memory whatever the application does. `LimitedWebRequest`
  refuses it in Twisted, as the bytes arrive: it answers 413 at once, keeps nothing more, and
  closes the connection once the client has stopped sending (or after DRAIN_SECONDS).

The limit: `CXM_WEBHOOK_MAX_BYTES` under /hooks/, `CXM_REQUEST_MAX_BYTES` elsewhere (the largest
upload, an insight snapshot, fits). A reverse proxy in front with the same limits stays advised.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBHOOK_PREFIX = "/hooks/"
# A refused client that keeps sending is disconnected after this long.
DRAIN_SECONDS = 10.0


def limit_for(path: str) -> int:
    return settings.WEBHOOK_MAX_BYTES if path.startswith(WEBHOOK_PREFIX) else settings.REQUEST_MAX_BYTES


def refusal_body(limit: int) -> bytes:
    """The 413's JSON, in the shape of every domain error (cxm.exceptions.CXMError.as_dict)."""
    reason = f"body is over the {limit}-byte limit"
    return json.dumps({"error": "payload_too_large", "reason": reason}).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _send_refusal(send, limit)
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _send_refusal(send, limit)
                    # The application sees the client go away: Django stops reading and answers
                    # nothing (RequestAborted), and the chunk that crossed the limit is dropped.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)


async def _send_refusal(send: Send, limit: int) -> None:
    body = refusal_body(limit)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def install_in_daphne() -> None:
    """Make Daphne build LimitedWebRequest for every HTTP request. Daphne's HTTPFactory reads
    its module's WebRequest when it builds each connection, and offers no setting for this. Called
    from cxm.asgi, which `daphne` and `runserver` import before they start serving."""
    try:
        from daphne import http_protocol
    except ImportError:  # another ASGI server: the middleware is the limit
        return
    http_protocol.WebRequest = _limited_request_class()


_LIMITED: type | None = None


def _limited_request_class() -> type:
    global _LIMITED
    if _LIMITED is not None:
        return _LIMITED
    from daphne.http_protocol import WebRequest
    from twisted.internet import reactor

    class LimitedWebRequest(WebRequest):
        """Daphne's request, refusing a body over the limit as Twisted receives it."""

        _limit = 0
        _received = 0
        _refused = False

        def gotLength(self, length: int | None) -> None:  # noqa: N802 (Twisted's name)
            # The request line is parsed but Request.path is only set once the body is complete;
            # the channel holds it meanwhile.
            path = getattr(self.channel, "_path", b"") or b""
            self._limit = limit_for(path.decode("latin-1").split("?", 1)[0])
            if length is not None and length > self._limit:
                self._refuse()
                return
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
            if self._refused:
                return  # drained: nothing is kept
            self._received += len(data)
            if self._received > self._limit:
                self._refuse()
                return
            super().handleContentChunk(data)

        def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
            if self._refused:  # answered already; the client has sent its last byte
                self.channel.transport.loseConnection()
                return
            super().requestReceived(command, path, version)

        def _refuse(self) -> None:
            self._refused = True
            content = getattr(self, "content", None)
            if content is not None:
                content.close()  # the spooled part is deleted now
            self.content = io.BytesIO()  # stays empty: Twisted reads it if nothing else
            body = refusal_body(self._limit)
            head = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
            self.channel.transport.write(head + body)
            # Closing now, while the client still sends, would make its kernel discard the 413
            # (a reset); it is given a moment to read the answer and stop.
            reactor.callLater(DRAIN_SECONDS, self.channel.transport.loseConnection)

    _LIMITED = LimitedWebRequest
    return _LIMITED
