from django.apps import AppConfig


class ResponsesConfig(AppConfig):
    """Love: routing, the live agent console and replies. Subscribes to learning's
    messages_classified."""

    name = "responses"
    verbose_name = "Responses (Love)"

    def ready(self):
        from responses import outbound_tasks, receivers  # noqa: F401 - connects the signal receivers
