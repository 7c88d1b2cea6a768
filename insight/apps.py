from django.apps import AppConfig


class InsightConfig(AppConfig):
    """Insight: dashboards, alerts and their exports, on top of the flow (insight -> responses ->
    learning -> listening). Subscribes to learning's messages_classified (live dashboards) and
    feeds responses' outbound webhooks when an alert is raised."""

    name = "insight"

    def ready(self):
        from insight import care_rollup, consumers, receivers  # noqa: F401 - connects the signal receivers
