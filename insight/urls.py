"""The dashboards' and alerts' console routes. cxm/urls.py mounts them under /console/ in the
console's namespace ("console:insight", "console:alerts", ...), next to responses.urls, so their
names did not change when they moved here. Every route must appear in the isolation matrix
(tests/responses/test_isolation_http.py)."""

from django.urls import path

from insight.views import alerts, dashboards

urlpatterns = [
    path("insight/alerts/", alerts.alert_list, name="alerts"),
    path("insight/alerts/settings/", alerts.alert_settings, name="alert-settings"),
    path("insight/alerts/<str:alert_id>/", alerts.alert_detail, name="alert"),
    path("insight/alerts/<str:alert_id>/acknowledge/", alerts.alert_acknowledge, name="alert-acknowledge"),
    path("insight/", dashboards.dashboard, name="insight"),
    path("insight/panels/<str:name>/", dashboards.panel, name="insight-panel"),
    path("insight/messages/", dashboards.messages, name="insight-messages"),
    path("insight/snapshot.pdf", dashboards.snapshot_pdf, name="insight-pdf"),
]
