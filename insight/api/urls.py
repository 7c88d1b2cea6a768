"""The insight area of /api/v1/ (panels and alerts). cxm/urls.py mounts these before
responses.api.urls, whose last route answers every unknown path with a 404. Every route must
have a row in the API's isolation matrix (tests/api/test_isolation.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from insight.api import views

router = SimpleRouter(trailing_slash=False)
router.register("alerts", views.AlertViewSet, basename="alert")

urlpatterns = [
    path("insight/panels", views.PanelList.as_view(), name="panels"),
    path("insight/panels/<str:name>", views.PanelDetail.as_view(), name="panel"),
    *router.urls,
]
