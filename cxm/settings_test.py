"""Settings for the test suite: production settings with test secrets, fast hashing and
loopback URLs allowed (the local fake providers listen on 127.0.0.1)."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-the-check-0123456789")
os.environ.setdefault("CXM_CREDENTIALS_KEYS", "dGVzdC1jcmVkZW50aWFscy1rZXktMzItYnl0ZXMtb2s=")
os.environ.setdefault("CXM_ALLOW_PRIVATE_URLS", "1")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# Tasks run inline in tests; tests/reliability starts a real worker and turns this off there.
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from cxm.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The test client and the live servers speak plain HTTP; tests/test_deploy_check.py checks the
# production settings' redirect and HSTS.
SECURE_SSL_REDIRECT = False

# One test database per test process, so runs started side by side never drop each other's.
_RUN = os.getpid()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not SQLite's shared in-memory database: that one has table locks without a busy
    # timeout, so tests that deliver concurrently from several threads would fail spuriously.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{_RUN}.sqlite3")}  # noqa: F405
elif not os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_cxm_{_RUN}"  # noqa: F405
