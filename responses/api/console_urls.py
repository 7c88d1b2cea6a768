"""The API tokens' console pages, under /console/tokens/ (namespace "tokens"); their access is in
tests/api/test_tokens.py."""

from django.urls import path

from responses.api import console

urlpatterns = [
    path("", console.token_list, name="list"),
    path("<str:token_id>/revoke/", console.token_revoke, name="revoke"),
]
