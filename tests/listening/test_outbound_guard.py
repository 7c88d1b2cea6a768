"""The SSRF guard holds at connect time: listening.http resolves a host once, checks every
address, and connects to the checked one (GuardedTransport), so a DNS answer that changes between
the check and the connection (rebinding) never reaches an inward address. The DNS is the public
internet's: the tests answer for it with a stub of `listening.http.resolve`, and stand in for a
public server by refusing connections to public addresses at `socket.create_connection`."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from listening import http
from listening.exceptions import ProviderRejected, ProviderUnavailable
from tests.fakes.http import Reply

PUBLIC = "93.184.215.14"


@pytest.fixture
def guarded(settings):
    settings.ALLOW_PRIVATE_URLS = False  # the test settings allow loopback; these tests test the guard


@pytest.fixture
def connections(monkeypatch):
    """Every address a socket is opened to; public ones are refused as if unreachable (the
    public internet is not reached from a test), loopback ones connect for real."""
    opened: list[str] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address[0])
        if ipaddress.ip_address(address[0]).is_global:
            raise ConnectionRefusedError(f"{address[0]} is the public internet")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


@pytest.fixture
def inward(fake_provider):
    """A server on loopback that a rebound name would reach."""
    fake_provider.route("GET", "/secret")(lambda r: Reply(200, {"secret": "admin"}))
    return fake_provider


def dns(monkeypatch, *answers: list[str]) -> list[str]:
    """The resolver answers `answers` in turn (the last one from then on); returns the names asked."""
    asked: list[str] = []

    def resolve(hostname: str, port: int) -> list[str]:
        asked.append(hostname)
        return answers[min(len(asked), len(answers)) - 1]

    monkeypatch.setattr(http, "resolve", resolve)
    return asked


def test_guard_refuses_a_name_rebound_to_loopback_between_check_and_connect(
        guarded, monkeypatch, connections, inward):
    port = int(inward.url.rsplit(":", 1)[1])
    asked = dns(monkeypatch, [PUBLIC], ["127.0.0.1"])
    with pytest.raises(ProviderRejected, match=r"rebind\.example resolves to a non-public address \(loopback"):
        http.request("GET", f"http://rebind.example:{port}/secret")
    assert asked == ["rebind.example", "rebind.example"]  # the URL check, then the connection's own
    assert connections == []  # no socket was opened to the rebound address
    assert inward.calls("/secret") == []


def test_guard_connects_to_the_checked_address_not_to_the_name(guarded, monkeypatch, connections, inward):
    """The OS resolver has been rebound to loopback; the transport never asks it: it opens its
    socket to the address it checked."""
    port = int(inward.url.rsplit(":", 1)[1])
    asked = dns(monkeypatch, [PUBLIC])
    real_getaddrinfo = socket.getaddrinfo

    def rebound(host, *args, **kwargs):
        if host == "rebind.example":
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    with pytest.raises(ProviderUnavailable, match="cannot reach"):
        http.request("GET", f"http://rebind.example:{port}/secret")
    assert connections == [PUBLIC]
    assert len(asked) == 2 and inward.calls("/secret") == []


def test_guard_keeps_the_host_header_when_it_connects_to_the_address(monkeypatch, inward):
    # Private URLs allowed (the test settings): the name resolves to the loopback fake.
    port = int(inward.url.rsplit(":", 1)[1])
    dns(monkeypatch, ["127.0.0.1"])
    assert http.request("GET", f"http://feeds.example:{port}/secret").json() == {"secret": "admin"}
    assert inward.calls("/secret")[0].headers["host"] == f"feeds.example:{port}"


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1", "ff0e::1", "2001:db8::1", "::127.0.0.1",
    "::ffff:127.0.0.1", "::ffff:8.8.8.8",  # IPv4-mapped
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::808:808", "64:ff9b:1::7f00:1",  # NAT64
    "2002:7f00:1::", "2002:a00:1::", "2002:a9fe:a9fe::",  # 6to4 of loopback, private, link-local
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
])
def test_guard_refuses_every_special_range(guarded, monkeypatch, connections, address):
    dns(monkeypatch, [address])
    assert http.refusal(ipaddress.ip_address(address)) != ""
    with pytest.raises(ProviderRejected, match="resolves to a non-public address"):
        http.request("GET", "http://special.example/feed")
    assert connections == []


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "2002:808:808::"])
def test_guard_lets_public_addresses_through(guarded, monkeypatch, connections, address):
    dns(monkeypatch, [address])
    assert http.refusal(ipaddress.ip_address(address)) == ""
    with pytest.raises(ProviderUnavailable, match="cannot reach"):  # refused by the stand-in internet
        http.request("GET", "http://public.example/feed")
    assert connections == [address]


def test_guard_refuses_a_name_with_any_inward_address(guarded, monkeypatch, connections):
    dns(monkeypatch, [PUBLIC, "10.0.0.5"])
    with pytest.raises(ProviderRejected, match=r"\(private: 10\.0\.0\.5\)"):
        http.guard_host("mixed.example", 443)


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    """A certificate for `name` only (not for 127.0.0.1), and its key: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_guard_keeps_sni_and_the_certificate_check_on_the_name(monkeypatch, tmp_path):
    """Connected to 127.0.0.1, TLS still names feeds.example (SNI) and checks the certificate
    against that name: the certificate is valid for feeds.example only, and is the only trusted one."""
    cert, key = _self_signed(tmp_path, "feeds.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            payload = json.dumps({"host": self.headers["Host"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        dns(monkeypatch, ["127.0.0.1"])  # private URLs allowed, as in the test settings
        answer = http.request("GET", f"https://feeds.example:{port}/feed").json()
        assert answer == {"host": f"feeds.example:{port}"}
        assert names == ["feeds.example"]
        dns(monkeypatch, ["127.0.0.1"])
        with pytest.raises(ProviderUnavailable, match="cannot reach"):  # the name is what is verified
            http.request("GET", f"https://other.example:{port}/feed")
    finally:
        server.shutdown()
        server.server_close()
