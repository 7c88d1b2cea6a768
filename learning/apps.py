from django.apps import AppConfig


class LearningConfig(AppConfig):
    """Learn: classification of stored messages. Filled in by the Learn issue; it subscribes to
    listening.signals.messages_ingested."""

    name = "learning"
