"""Login behind the README's reverse proxy: the client's address is read through the trusted
proxies only, lockout holds per username across addresses and per address across usernames, and
the production settings pass `check --deploy` (HSTS, SSL redirect, the proxy's scheme header)."""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import RequestFactory
from django.urls import reverse

from cxm.client_address import client_ip
from listening.models import AuditEvent
from responses.models import Role
from tests.responses.conftest import PASSWORD, make_user

ROOT = Path(__file__).resolve().parents[2]
PROXY = "10.0.0.2"  # the reverse proxy, as Daphne sees it
ATTACKER, COLLEAGUE = "203.0.113.66", "198.51.100.23"


def from_address(address: str, forged: str = "") -> dict:
    """What Daphne sees behind the proxy: the proxy's address, and X-Forwarded-For ending with
    the address the proxy saw (after whatever the client sent itself)."""
    return {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{forged}, {address}" if forged else address}


def login(client, username: str, password: str, address: str):
    return client.post("/accounts/login/", {"username": username, "password": password}, **from_address(address))


@pytest.mark.parametrize(("trusted", "meta", "expected"), [
    ([], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": ATTACKER}, PROXY),  # no proxy configured: header ignored
    (["10.0.0.0/8"], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": ATTACKER}, ATTACKER),
    (["10.0.0.0/8"], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"1.1.1.1, {ATTACKER}"}, ATTACKER),  # forged
    (["10.0.0.0/8"], {"REMOTE_ADDR": COLLEAGUE, "HTTP_X_FORWARDED_FOR": ATTACKER}, COLLEAGUE),  # not via the proxy
    (["10.0.0.0/8"], {"REMOTE_ADDR": PROXY}, PROXY),  # the proxy itself, with no header
    (["192.0.2.0/24", "10.0.0.2"], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"1.1.1.1, {ATTACKER}, 192.0.2.7"},
     ATTACKER),  # two hops, outermost first
    (["192.0.2.0/24", "10.0.0.2"], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": f"{ATTACKER}, 198.51.100.9"},
     PROXY),  # the outer hop is not the trusted one: nothing in the header is believed
    (["10.0.0.0/8"], {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "2001:db8::7"}, "2001:db8::7"),
])
def test_client_ip_believes_forwarded_for_only_from_the_trusted_proxies(settings, trusted, meta, expected):
    settings.CXM_TRUSTED_PROXIES = trusted
    assert client_ip(RequestFactory().get("/", **meta)) == expected


def test_one_attacker_behind_the_proxy_locks_out_only_the_username_they_guess(client, settings, agent_a,
                                                                             supervisor_a):
    settings.CXM_TRUSTED_PROXIES = ["10.0.0.0/8"]
    statuses = [login(client, "agent_a", f"wrong-{n}", ATTACKER).status_code for n in range(5)]
    assert statuses == [200] * 4 + [429]
    # The username is locked from every address (guessing on from elsewhere gets nowhere) ...
    assert login(client, "agent_a", PASSWORD, COLLEAGUE).status_code == 429
    # ... but everyone else behind the same proxy still signs in.
    signed_in = login(client, "supervisor_a", PASSWORD, COLLEAGUE)
    assert signed_in.status_code == 302 and signed_in["Location"] == "/console/"


def test_password_spraying_from_one_address_is_locked_out(client, settings, django_user_model, agent_a):
    settings.CXM_TRUSTED_PROXIES = ["10.0.0.0/8"]
    names = [make_user(django_user_model, f"user{n}_x", Role.AGENT).username for n in range(5)]
    statuses = [login(client, name, "Winter2026!", ATTACKER).status_code for name in names]
    assert statuses == [200] * 4 + [429]  # one guess per username, five usernames: the address is locked
    assert login(client, "agent_a", PASSWORD, ATTACKER).status_code == 429
    # The usernames were guessed once each: their owners, elsewhere, are not locked out.
    assert login(client, names[0], PASSWORD, COLLEAGUE).status_code == 302


def test_a_forged_forwarded_for_does_not_escape_the_address_lockout(client, settings, agent_a):
    settings.CXM_TRUSTED_PROXIES = ["10.0.0.0/8"]
    for n in range(5):
        client.post("/accounts/login/", {"username": f"nobody{n}", "password": "x"},
                    **from_address(ATTACKER, forged=f"192.0.2.{n}"))
    assert client.post("/accounts/login/", {"username": "agent_a", "password": PASSWORD},
                       **from_address(ATTACKER, forged="192.0.2.200")).status_code == 429


def test_the_audit_log_names_the_client_behind_the_proxy(client, settings, admin_user, make_connector):
    settings.CXM_TRUSTED_PROXIES = ["10.0.0.0/8"]
    connector = make_connector("webhook", slug="site")
    client.force_login(admin_user)
    response = client.post(reverse("console:connector-pause", kwargs={"connector_id": connector.pk}),
                           **from_address(COLLEAGUE, forged="1.1.1.1"))
    assert response.status_code in (200, 302)
    assert AuditEvent.objects.get(connector=connector).ip == COLLEAGUE


def _production(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"SECRET_KEY", "CXM_CREDENTIALS_KEYS", "DEBUG", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE",
                          "CXM_SSL_REDIRECT", "CXM_HSTS_SECONDS", "CXM_TRUSTED_PROXIES"}}
    secret = "".join(secrets.choice(string.ascii_letters + string.digits + "!@#%^&*(-_=+)") for _ in range(50))
    env = {"DEBUG": "0", "SECRET_KEY": secret, "CXM_CREDENTIALS_KEYS": Fernet.generate_key().decode(),
           "ALLOWED_HOSTS": "x", "DJANGO_SETTINGS_MODULE": "cxm.settings", **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_the_production_settings():
    result = _production("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout and "WARNINGS" not in result.stdout + result.stderr
    shown = _production("shell", "-c", "from django.conf import settings as s; "
                        "print(s.SECURE_SSL_REDIRECT, s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_SECONDS)")
    assert shown.stdout.strip().split("\n")[-1] == "True ('HTTP_X_FORWARDED_PROTO', 'https') 31536000", shown.stderr


def test_a_malformed_trusted_proxy_stops_the_start_with_its_name():
    result = _production("check", CXM_TRUSTED_PROXIES="10.0.0.0/8,not-an-address")
    assert result.returncode != 0 and "CXM_TRUSTED_PROXIES" in result.stderr
