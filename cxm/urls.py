from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView

from insight import urls as insight_urls
from insight.api import urls as insight_api_urls
from responses import urls as responses_urls
from responses.api import urls as responses_api_urls
from responses.views.base import with_csp


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:inbox", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("accounts/login/", with_csp(auth_views.LoginView.as_view(redirect_authenticated_user=True)), name="login"),
    path("accounts/logout/", with_csp(auth_views.LogoutView.as_view()), name="logout"),
    # The dashboards' routes share the console's namespace and pages, so "console:insight" and
    # friends kept their names when they moved to the insight app.
    path("console/", include(([*responses_urls.urlpatterns, *insight_urls.urlpatterns], "console"))),
    # insight's API routes first: responses' list ends with the catch-all 404.
    path("api/v1/", include(([*insight_api_urls.urlpatterns, *responses_api_urls.urlpatterns], "api"))),
    path("admin/", admin.site.urls),
    path("", include("listening.urls")),
]
