"""A 300 MB request body is refused while it streams in, and the server's memory stays flat: the
real ASGI server of the README (Daphne) runs cxm.asgi in a subprocess on a free loopback port,
and its peak resident memory (VmHWM in /proc/<pid>/status) is read before and after."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT

MB = 1024 * 1024
BODY = 300 * MB
# Django, Channels and the app's modules take well over 60 MB by themselves: growth under this
# means the body was not held (Daphne alone held the whole body: +300 MB, in the issue).
GROWTH_LIMIT = 60 * MB


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc (Linux only)")


@pytest.fixture
def daphne(tmp_path) -> Iterator[tuple[int, int]]:
    """(port, pid) of `daphne cxm.asgi:application`, answering its health check."""
    port = _free_port()
    # The refusal comes before any view or database work, so the server needs no test database.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cxm.settings_test", "CXM_WEBHOOK_MAX_BYTES": str(MB)}
    log = (tmp_path / "daphne.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "cxm.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "daphne.log").read_text()[-2000:]
            try:
                if _get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Daphne did not answer within 120 s"
            time.sleep(0.3)
        yield port, server.pid
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(20)
        log.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _post_streaming(port: int, path: str, total: int, *, declare: bool) -> tuple[bytes, int]:
    """POST `total` bytes made as they are sent (64 KiB chunks, never all held), chunked or with
    a Content-Length; stops as soon as the server answers. Returns (answer, bytes sent)."""
    chunk = b"x" * (64 * 1024)
    framing = f"Content-Length: {total}" if declare else "Transfer-Encoding: chunked"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n").encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk if declare else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            if sent >= total and not declare:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed; its answer is read below
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    return answer, sent


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.mark.parametrize("declare", [False, True], ids=["chunked", "content-length"])
def test_daphne_refuses_a_300_mb_body_while_it_streams_with_flat_memory(daphne, declare):
    port, pid = daphne
    before = _peak_rss(pid)
    answer, sent = _post_streaming(port, "/hooks/1/", BODY, declare=declare)
    grown = _peak_rss(pid) - before
    status, body = _status_and_json(answer)
    assert status == 413
    assert body == {"error": "payload_too_large", "reason": f"body is over the {MB}-byte limit"}
    assert sent < BODY  # answered while the body was still coming, so the client stopped
    assert grown < GROWTH_LIMIT, f"Daphne's peak memory grew {grown / MB:.0f} MB"
    # And it still serves.
    assert _get(port, "/healthz") == (200, b'{"ok": true}')
