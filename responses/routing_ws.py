"""Websocket routes. Every route here must appear in the isolation matrix
(tests/responses/test_isolation_ws.py), which fails when one is missing."""

from django.urls import path

from responses.consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("ws/console/", ConsoleConsumer.as_asgi(), name="ws-console"),
]
