from django.apps import AppConfig


class ListeningConfig(AppConfig):
    """Listen: connectors, contacts, conversations and messages, and their ingestion."""

    name = "listening"
    default_auto_field = "django.db.models.BigAutoField"
