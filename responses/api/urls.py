"""/api/v1/: the routes (mounted by cxm/urls.py). Every route here must have a row in the API's
isolation matrix (tests/api/test_isolation.py), which fails when one is missing."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter

from responses.api import admin, cases, messages, proactive, profile, search, signals, webhooks
from responses.api.errors import no_such_route

router = SimpleRouter(trailing_slash=False)
router.register("cases", cases.CaseViewSet, basename="case")
router.register("messages", messages.MessageViewSet, basename="message")
router.register("conversations", messages.ConversationViewSet, basename="conversation")
router.register("corrections", messages.CorrectionViewSet, basename="correction")
router.register("customers", messages.CustomerViewSet, basename="customer")
router.register("contacts", messages.ContactViewSet, basename="contact")
router.register("proactive-messages", proactive.ProactiveMessageViewSet, basename="proactive-message")
router.register("admin/connectors", admin.ConnectorViewSet, basename="admin-connector")
router.register("admin/teams", admin.TeamViewSet, basename="admin-team")
router.register("admin/queues", admin.QueueViewSet, basename="admin-queue")
router.register("admin/rules", admin.RuleViewSet, basename="admin-rule")
router.register("admin/intents", admin.IntentViewSet, basename="admin-intent")
router.register("admin/webhooks", webhooks.SubscriptionViewSet, basename="admin-webhook")
router.register("admin/webhook-deliveries", webhooks.DeliveryViewSet, basename="admin-webhook-delivery")

urlpatterns = [
    # The schema and its page are public (they describe, they hold no data), served offline: the
    # page's scripts come from drf-spectacular-sidecar, not a CDN.
    path("schema", SpectacularAPIView.as_view(permission_classes=[AllowAny], authentication_classes=[]),
         name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[AllowAny],
                                                 authentication_classes=[]), name="docs"),
    path("signals", signals.SignalCreate.as_view(), name="signals"),
    path("search", search.Search.as_view(), name="search"),
    path("customers/<int:pk>/profile", profile.CustomerProfile.as_view(), name="customer-profile"),
    *router.urls,
    # Anything else under /api/v1/ is a problem+json 404, not the site's HTML page.
    re_path(r"^.*$", no_such_route, name="not-found"),
]
