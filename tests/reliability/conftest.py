"""A real Celery worker on the Redis at REDIS_URL, reading the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db import connection
from kombu import pools as kombu_pools

from cxm.celery import app

ROOT = Path(__file__).resolve().parents[2]


def _test_database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        user = settings.get("USER") or "postgres"
        host, port = settings.get("HOST") or "127.0.0.1", settings.get("PORT") or 5432
        return f"postgres://{user}@{host}:{port}/{settings['NAME']}"
    return f"sqlite:///{settings['NAME']}"


def needs_redis(reason: str) -> None:
    """Skip on a developer machine without Redis; fail in CI, which must run these tests (as the
    browser tests do in tests/e2e)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the reliability tests must run)", pytrace=False)
    pytest.skip(reason)


def redis_url_or_skip() -> str:
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        needs_redis(f"needs a Redis server at {redis_url} (set REDIS_URL)")
    return redis_url


def start_worker(queue: str, redis_url: str, *, pool: str = "solo", concurrency: int = 1,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`celery worker` on the test's queues (default and learning, as in production, where
    classification has its own queue), reading the test database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cxm.settings_test",
        "DATABASE_URL": _test_database_url(),
        "TEST_DATABASE_NAME": "unused",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CXM_DEFAULT_QUEUE": queue,
        "CXM_LEARNING_QUEUE": f"{queue}-learning",
        "REDIS_URL": redis_url,
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "cxm", "worker", "-P", pool, "-c", str(concurrency),
         "-Q", f"{queue},{queue}-learning", "--without-heartbeat", "--without-mingle", "--without-gossip",
         "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


@pytest.fixture
def celery_queue(transactional_db) -> Iterator[tuple[str, str]]:
    """A queue of the test's own on Redis, (name, redis_url): tasks sent from the test go to it and
    to its learning queue, for workers started with start_worker."""
    redis_url = redis_url_or_skip()
    queue = f"cxm-test-{os.getpid()}-{time.monotonic_ns()}"
    conf = app.conf
    previous = (conf.task_always_eager, conf.task_default_queue, conf.broker_url, conf.task_routes)
    conf.task_always_eager, conf.task_default_queue, conf.broker_url = False, queue, redis_url
    conf.task_routes = {"learning.*": {"queue": f"{queue}-learning"}}
    _reset_router()
    try:
        yield queue, redis_url
    finally:
        conf.task_always_eager, conf.task_default_queue, conf.broker_url, conf.task_routes = previous
        _reset_router()
        # Close connections the worker test opened so the test database can be dropped.
        connection.close()


@pytest.fixture
def celery_worker(celery_queue) -> Iterator[subprocess.Popen]:
    """One worker (solo pool) on the test's queues."""
    worker = start_worker(*celery_queue)
    try:
        yield worker
    finally:
        stop_worker(worker)


def _reset_router() -> None:
    """Celery caches its router (built from task_routes) and its broker connection pool (built
    from broker_url) at first use; an earlier test may have built both for another broker or
    queue. Forget them, as Celery itself does in a forked child."""
    kombu_pools.reset()
    app._after_fork()
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)


def kill_worker_once(queue: str, redis_url: str, working, describe, *, timeout: float,
                     concurrency: int, extra_env: dict[str, str] | None = None) -> None:
    """Start a threaded worker, SIGKILL it as soon as `working()` holds (it has done some work and
    still holds tasks), and fail with `describe()` if it never does."""
    worker = start_worker(queue, redis_url, pool="threads", concurrency=concurrency, extra_env=extra_env)
    try:
        started = wait_for(working, timeout=timeout, interval=0.02)
        assert started, (describe(), worker.poll())
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            stop_worker(worker)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
