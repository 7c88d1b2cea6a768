"""The harness itself: Chromium logs into the real server, which shares the test database."""

from __future__ import annotations

from tests.e2e.conftest import login


def test_admin_login_in_the_browser(page, live_server_url, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", "s3cret-pass")

    login(page, live_server_url, "root", "s3cret-pass", path="/admin/login/")

    assert page.url == f"{live_server_url}/admin/"
    assert "Site administration" in page.locator("#content h1").inner_text()
