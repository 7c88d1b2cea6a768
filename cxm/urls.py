from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView

from responses.views.base import with_csp


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="console:inbox", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("accounts/login/", with_csp(auth_views.LoginView.as_view(redirect_authenticated_user=True)), name="login"),
    path("accounts/logout/", with_csp(auth_views.LogoutView.as_view()), name="logout"),
    path("console/tokens/", include(("responses.api.console_urls", "tokens"))),
    path("console/", include(("responses.urls", "console"))),
    path("api/v1/", include(("responses.api.urls", "api"))),
    path("admin/", admin.site.urls),
    path("", include("listening.urls")),
]
