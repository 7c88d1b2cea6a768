"""Settings for the test suite: production settings with test secrets, fast hashing and
loopback URLs allowed (the local fake providers listen on 127.0.0.1)."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-the-check-0123456789")
os.environ.setdefault("CXM_CREDENTIALS_KEYS", "dGVzdC1jcmVkZW50aWFscy1rZXktMzItYnl0ZXMtb2s=")
os.environ.setdefault("CXM_ALLOW_PRIVATE_URLS", "1")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

from cxm.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
