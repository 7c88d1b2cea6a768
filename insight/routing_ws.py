"""Insight's websocket route, mounted by cxm/asgi.py. Every route must appear in the isolation
matrix (tests/responses/test_isolation_ws.py)."""

from django.urls import path

from insight.consumers import InsightConsumer

websocket_urlpatterns = [
    path("ws/insight/", InsightConsumer.as_asgi(), name="ws-insight"),
]
