from django.apps import AppConfig


class ListeningConfig(AppConfig):
    """Listen: connectors, contacts, conversations and messages, and their ingestion."""

    name = "listening"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # tasks: the receiver that queues a requested backfill; attributes and location: the
        # profile's receivers (signals set attributes; messages teach the channel and location).
        from listening import attributes, location, tasks  # noqa: F401
