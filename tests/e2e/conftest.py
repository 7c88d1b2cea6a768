"""Browser tests: Debian's Chromium, driven by Playwright, against the real ASGI app (Daphne) in a
subprocess that reads and writes the test database.

    def test_something(page, live_server_url, django_user_model):
        django_user_model.objects.create_user("ann", password="pw")
        login(page, live_server_url, "ann", "pw")
        page.goto(f"{live_server_url}/console/")

Chromium comes from apt (`.ci/run` installs it), never from `playwright install`. Without it the
tests are skipped locally, but they fail in CI (the CI environment variable is set).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.db import connection

from tests.reliability.conftest import _test_database_url

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CXM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Containers often have a 64 MB /dev/shm; Chromium crashes when it runs out.
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT = 60.0
PAGE_TIMEOUT_MS = 10_000


def _unavailable(reason: str) -> None:
    """Skip on a developer machine without a browser; fail in CI, which must run these tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)", pytrace=False)
    pytest.skip(reason)


# --- The server ---------------------------------------------------------------------------------


class _ServerOutput:
    """Reads the server's stdout+stderr on a thread, so that a full pipe never blocks it."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        self._thread.join(timeout=2)
        return "".join(self.lines)


@pytest.fixture
def live_server_url(transactional_db) -> Iterator[str]:
    """Start the real ASGI application with Daphne on a free port of 127.0.0.1, reading the test
    database, and yield its base URL ("http://127.0.0.1:PORT", no trailing slash).

    The server runs with DEBUG=1, as `make run` does, on top of cxm.settings_test (which still
    sets the secrets, the allowed hosts 127.0.0.1 and localhost, and the test database through
    DATABASE_URL). Why not DEBUG off, as in production:
    - static files: WhiteNoise serves them from the apps' folders only with DEBUG on; with it off
      it serves STATIC_ROOT, which needs a collectstatic first, else every CSS and JS file
      (admin's, the console's) answers 404;
    - cookies: with DEBUG off, SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE are on and this
      server speaks plain HTTP. Chromium happens to keep Secure cookies from http://127.0.0.1
      (loopback counts as a secure origin), but other clients do not, so nothing relies on it;
    - a failing page shows its traceback, and the server output below has it too.
    Celery tasks run eagerly inside the server, so it classifies messages itself (the first
    classification loads the model: allow seconds).
    """
    # The test process binds the port and hands the listening socket to Daphne (--fd), so the
    # port is known before the server starts and no other process can take it in between.
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cxm.settings_test",
        "DATABASE_URL": _test_database_url(),
        "TEST_DATABASE_NAME": "unused",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }  # REDIS_URL passes through: when set (CI), the channel layer is Redis, as in production.
    with listener:
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "--fd", str(listener.fileno()), "cxm.asgi:application"],
            cwd=ROOT, env=env, pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    output = _ServerOutput(server.stdout)
    started = False
    try:
        _wait_until_healthy(server, output, url)
        started = True
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        if started:  # shown by pytest under "Captured stdout teardown" when the test fails
            print(f"--- Daphne output (exit status {server.returncode}) ---\n{output.text()}")
        # Close connections the test opened so the test database can be flushed and dropped.
        connection.close()


def _wait_until_healthy(server: subprocess.Popen, output: _ServerOutput, url: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    problem = "no answer yet"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            problem = f"exited with status {server.returncode}"
            break
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
                problem = f"/healthz answered {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            problem = f"/healthz: {exc}"
        time.sleep(0.2)
    else:
        problem = f"not healthy after {SERVER_START_TIMEOUT:.0f} s ({problem})"
    server.kill()
    server.wait(5)
    pytest.fail(f"Daphne did not start at {url}: {problem}. Its output:\n{output.text()}", pytrace=False)


# --- The browser --------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """Chromium (headless) under Playwright's sync API, shared by the tests of tests/e2e.

    Package scope, not session scope: while Playwright's sync API is started, this thread has
    a running asyncio event loop, and Django refuses ORM calls from a thread with a running
    loop (SynchronousOnlyOperation). So DJANGO_ALLOW_ASYNC_UNSAFE is set while the browser
    lives, and both end with the last browser test; the rest of the suite keeps the check. The
    server under test runs in its own process and keeps the check as well."""
    if not os.path.exists(CHROMIUM):
        _unavailable(f"no browser at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (scripts/bootstrap dev)")

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page in a fresh browser context (no cookies shared with other tests); every
    wait and navigation times out after 10 s unless the call says otherwise."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def login(page, base_url: str, username: str, password: str, path: str = "/accounts/login/",
          next: str | None = None) -> None:
    """Log in through the login form at `path` (the product's, or "/admin/login/" for Django
    admin's) and wait for the redirect; fail with the form's errors when it does not log in."""
    url = f"{base_url}{path}" + (f"?{urlencode({'next': next})}" if next else "")
    page.goto(url)
    form = page.locator("form:has(input[name='password'])")
    form.locator("input[name='username']").fill(username)
    form.locator("input[name='password']").fill(password)
    with page.expect_navigation():
        form.locator("[type='submit']").first.click()
    if urlsplit(page.url).path == path:
        errors = page.locator(".errornote, .errorlist, [role='alert']").all_inner_texts()
        raise AssertionError(f"login as {username!r} failed at {page.url}: {errors or page.title()!r}")


def screenshot(target, name: str, **options) -> None:
    """Save a screenshot of a page (or a locator) as <name>.png only when asked: CXM_SCREENSHOTS=<folder>
    (or =1 for docs/screenshots). A test run leaves the tree alone; the README's screenshots are
    refreshed on purpose, and looked at before they are committed."""
    folder = os.environ.get("CXM_SCREENSHOTS")
    if not folder:
        return
    path = Path("docs/screenshots" if folder == "1" else folder)
    path.mkdir(parents=True, exist_ok=True)
    target.screenshot(path=str(path / f"{name}.png"), **options)


def nav_link(page, link_id: str):
    """The top bar's link `#link_id`, reached as a user reaches it: through "Menu" on a phone, and
    through the Setup menu for the setup pages. Returns the link's locator, ready to click."""
    toggle = page.locator(".nav-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    link = page.locator(f"#{link_id}")
    setup = page.locator("#setup-menu")
    if not link.is_visible() and setup.count() and setup.locator(f"#{link_id}").count():
        setup.locator("summary").click()
    return link
