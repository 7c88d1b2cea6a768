from django.apps import AppConfig


class ResponsesConfig(AppConfig):
    """Love: routing, the agent console and replies. Filled in by the Love issue."""

    name = "responses"
