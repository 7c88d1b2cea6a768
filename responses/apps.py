from django.apps import AppConfig


class ResponsesConfig(AppConfig):
    """Love: routing, the live agent console and replies. Subscribes to learning's
    messages_classified."""

    name = "responses"
    verbose_name = "Responses (Love)"

    def ready(self):
        from django.db.models.signals import post_migrate

        from responses import outbound_tasks, receivers, tasks  # noqa: F401 - connects the signal receivers
        from responses.search import heal_indexes

        post_migrate.connect(heal_indexes, sender=self)  # SQLite search triggers a table rebuild dropped
