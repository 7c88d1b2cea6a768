from django.apps import AppConfig


class ListeningConfig(AppConfig):
    """Listen: connectors, contacts, conversations and messages, and their ingestion."""

    name = "listening"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from listening import tasks  # noqa: F401 - connects the receiver that queues a requested backfill
