"""Talking to the console websocket in tests, through the real ASGI application (origin check,
session auth, channel layer), with channels' WebsocketCommunicator."""

from __future__ import annotations

import time

from channels.testing import WebsocketCommunicator
from django.test import Client

from cxm.asgi import application

ORIGIN = b"http://testserver"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def communicator(cookie: str | None = None, *, origin: bytes = ORIGIN, path: str = "/ws/console/"):
    headers = [(b"origin", origin)] if origin else []
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def connect(cookie: str, last_event_id: int | None = 0) -> WebsocketCommunicator:
    comm = communicator(cookie)
    connected, code = await comm.connect(timeout=10)
    assert connected, f"refused with {code}"
    await comm.send_json_to({"type": "hello", "last_event_id": last_event_id})
    welcome = await comm.receive_json_from(timeout=10)
    assert welcome["type"] == "welcome"
    return comm


async def receive_until(comm, predicate, timeout: float = 10.0) -> list[dict]:
    """Every message until one satisfies `predicate` (included); fails on timeout."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; received {seen[-5:]}"
        message = await comm.receive_json_from(timeout=left)
        seen.append(message)
        if predicate(message):
            return seen


async def collect_events(comm, count: int, timeout: float = 30.0) -> list[dict]:
    """Events until `count` have arrived (more may come; the caller checks)."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = await comm.receive_json_from(timeout=left)
        except TimeoutError:
            break
        if message["type"] == "events":
            events.extend(message["events"])
    return events


async def nothing_more(comm, wait: float = 1.5) -> bool:
    return await comm.receive_nothing(timeout=wait, interval=0.05)
