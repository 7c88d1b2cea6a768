"""The per-token rate limit is one count for every server process: it lives in the "api" cache
(Redis when REDIS_URL is set), incremented atomically. Two cache clients, and two OS processes,
share it; without Redis (the one-process trial) these tests are skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from responses.api.auth import hit
from tests.api.conftest import Api, token_for

REPO = Path(__file__).resolve().parents[2]
needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the shared counter is Redis's")


def _mid_window(seconds: int = 60) -> float:
    """A moment well inside a window, so a test's requests do not straddle two."""
    now = time.time()
    if now % seconds > seconds - 3:
        time.sleep(seconds - now % seconds + 0.05)
    return time.time()


@needs_redis
def test_rate_limit_counter_is_shared_by_two_cache_clients(settings):
    second = RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": "cxm"})  # its own connection pool
    assert second._cache.get_client() is not caches["api"]._cache.get_client()
    key, now = f"shared-{uuid.uuid4().hex}", _mid_window()
    assert [hit(key, 3, 60, now)[1] for _ in range(2)] == [True, True]
    # The other client sees the two and adds the third; the fourth, on either, is over the limit.
    window_key = f"cxm.api.{key}:{int(now // 60)}"
    assert second.get(window_key) == 2
    assert second.incr(window_key) == 3
    assert hit(key, 3, 60, now)[1] is False


@needs_redis
def test_rate_limit_counter_is_shared_by_two_processes():
    key, limit = f"procs-{uuid.uuid4().hex}", 10
    now = _mid_window()
    script = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'cxm.settings'); django.setup();"
        "from responses.api.auth import hit;"
        f"print(sum(hit({key!r}, {limit}, 60, {now})[1] for _ in range(7)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    other = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    assert other.stdout.strip().splitlines()[-1] == "7"  # all within the limit there
    here = [hit(key, limit, 60, now)[1] for _ in range(7)]
    assert here == [True, True, True, False, False, False, False]  # 7 + 3 = 10 across both processes


def test_rate_limit_window_resets_and_says_when(settings):
    key = f"reset-{uuid.uuid4().hex}"
    start = 1_800_000_000.0  # a window's first second
    assert hit(key, 1, 60, start) == (60.0, True)
    wait, allowed = hit(key, 1, 60, start + 45)
    assert (allowed, wait) == (False, 15.0)
    assert hit(key, 1, 60, start + 60)[1] is True  # the next window


def test_rate_limit_revoked_token_is_refused_before_it_is_counted(agent_a, settings):
    settings.CXM_API_RATE = "2/min"
    _mid_window()
    api = Api(token_for(agent_a, ["cases:read"]))
    assert api.get("/cases").status_code == 200
    assert Api("cxm_not-a-token").get("/cases").status_code == 401
    assert api.get("/cases").status_code == 200
    assert api.get("/cases").status_code == 429
