"""Production refuses to start without real secrets; env helpers fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from cxm.env import env_bool, env_int, env_list


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "CXM_CREDENTIALS_KEYS", "DEBUG"}}
    clean["DJANGO_SETTINGS_MODULE"] = "cxm.settings"
    return subprocess.run([sys.executable, "manage.py", "check"], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_production_refuses_without_secret_key():
    result = _start({"DEBUG": "0", "CXM_CREDENTIALS_KEYS": "x"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_without_credentials_key():
    result = _start({"DEBUG": "0", "SECRET_KEY": "k" * 50})
    assert result.returncode != 0
    assert "CXM_CREDENTIALS_KEYS" in result.stderr


def test_debug_trial_starts_without_secrets():
    result = _start({"DEBUG": "1"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("off", False), ("Yes", True)])
def test_env_bool_parses(raw, expected):
    assert env_bool("X", environ={"X": raw}) is expected


def test_env_helpers_fail_loudly_naming_the_variable():
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env_bool("FLAG", environ={"FLAG": "maybe"})
    with pytest.raises(ImproperlyConfigured, match="PORT must be an integer"):
        env_int("PORT", 1, environ={"PORT": "80a"})
    with pytest.raises(ImproperlyConfigured, match=">= 1"):
        env_int("N", 1, minimum=1, environ={"N": "0"})
    assert env_list("L", environ={"L": " a, ,b "}) == ["a", "b"]


def test_postgres_uses_a_bounded_pool_not_persistent_connections():
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "db = settings.DATABASES['default']; print(db['CONN_MAX_AGE'], db['OPTIONS']['pool']['max_size'])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cxm.settings", "DEBUG": "1",
           "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cxm", "DB_POOL_MAX_SIZE": "5"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["0", "5"], result.stderr
