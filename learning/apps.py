from django.apps import AppConfig


class LearningConfig(AppConfig):
    """Learn: classification of stored messages. Subscribes to listening's messages_ingested."""

    name = "learning"

    def ready(self):
        from learning import receivers  # noqa: F401 - connects the signal receivers
