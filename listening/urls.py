from django.urls import path

from listening import views

urlpatterns = [
    path("hooks/<str:ref>/", views.webhook, name="webhook"),
]
