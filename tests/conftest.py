from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.http import FakeProvider


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A real HTTP server on 127.0.0.1 with routes the test registers."""
    with FakeProvider() as server:
        yield server


@pytest.fixture
def make_connector(db):
    """Create a Connector row: make_connector("telegram", config={...}, credentials={...})."""
    from listening.models import Connector

    counter = {"n": 0}

    def make(kind: str, *, config: dict[str, Any] | None = None,
             credentials: dict[str, Any] | None = None, **fields: Any) -> Connector:
        counter["n"] += 1
        connector = Connector(
            kind=kind,
            name=fields.pop("name", f"{kind} {counter['n']}"),
            slug=fields.pop("slug", f"{kind}-{counter['n']}"),
            config=config or {},
            **fields,
        )
        connector.credentials = credentials or {}
        connector.save()
        return connector

    return make


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty Django cache (the dashboards cache the channels they know)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
