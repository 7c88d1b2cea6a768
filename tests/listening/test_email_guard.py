"""The SSRF guard holds for the email connector's IMAP and SMTP connections: the server's name is
resolved and checked once (listening.http.guard_host) and the socket goes to that checked address
(listening.connectors.email_transport), so a DNS answer that changes afterwards (rebinding) never
reaches an inward address, while TLS still verifies the certificate against the name.

The DNS is the public internet's: a stub of `listening.http.resolve` answers for it (as in
test_outbound_guard), `socket.getaddrinfo` stands in for a rebound OS resolver, and a public
server is stood in for by refusing connections to public addresses. The servers are real: Dovecot
(behind a TLS relay, as it runs without TLS here) and aiosmtpd from tests/fakes/mailserver.py."""

from __future__ import annotations

import ipaddress
import re
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from listening.connectors.base import OutboundReply
from listening.exceptions import ProviderRejected, ProviderUnavailable
from listening.models import Health
from listening.polling import poll_connector
from tests.fakes.mailserver import PASSWORD, USER, Dovecot, FakeSMTP, require_dovecot
from tests.listening.test_outbound_guard import PUBLIC, _self_signed, dns

# The local SMTP server takes AUTH without TLS on loopback, as it is meant to here.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

NAME = "mail.acme.example"  # the name the test certificate is for


@pytest.fixture(scope="module")
def dovecot():
    require_dovecot()
    server = Dovecot().start()
    server.create("Support")
    yield server
    server.stop()


@pytest.fixture
def smtp():
    server = FakeSMTP(USER, PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def guarded(settings):
    settings.ALLOW_PRIVATE_URLS = False  # the test settings allow loopback; these tests test the guard


@pytest.fixture
def connections(monkeypatch):
    """Every host a client socket is opened to; public addresses are refused as if unreachable
    (the public internet is not reached from a test), anything else connects for real."""
    opened: list[str] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address[0])
        with suppress(ValueError):  # a name, not an address: connect by name, as the OS would
            if ipaddress.ip_address(address[0]).is_global:
                raise ConnectionRefusedError(f"{address[0]} is the public internet")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


def os_resolver(monkeypatch, answer: str | None) -> None:
    """The OS resolver answers `answer` for every *.example name (None: it knows none of them)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".example"):
            if answer is None:
                raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown")
            host = answer
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def mailbox_config(imap_host: str, imap_port: int, smtp_host: str, smtp_port: int, *,
                   imap_security: str = "ssl", smtp_security: str = "starttls") -> dict:
    return {"imap_host": imap_host, "imap_port": imap_port, "imap_security": imap_security, "mailbox": "Support",
            "smtp_host": smtp_host, "smtp_port": smtp_port, "smtp_security": smtp_security,
            "from_address": "care@acme.test", "from_name": "Acme Care"}


def mismatch(name: str) -> str:
    """The words of a certificate refused because it is not for `name`."""
    return rf"{re.escape(name)}:\d+.*CERTIFICATE_VERIFY_FAILED.*not valid for '{re.escape(name)}'"


def outbound() -> OutboundReply:
    return OutboundReply(text="We are on it.", channel="email", recipient_id="ada@example.org", subject="Kettle")


def server_context(tmp_path, monkeypatch) -> tuple[ssl.SSLContext, list[str | None]]:
    """A TLS server context with a certificate for NAME only, trusted alone by the client side
    (SSL_CERT_FILE), and the SNI names it was asked for."""
    cert, key = _self_signed(tmp_path, NAME)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    return context, names


@contextmanager
def tls_relay(port: int, context: ssl.SSLContext) -> Iterator[int]:
    """A TLS endpoint (IMAP's port 993 way) relaying each connection, decrypted, to loopback `port`."""
    listener = socket.create_server(("127.0.0.1", 0))

    def relay(secure: ssl.SSLSocket, backend: socket.socket) -> None:
        peer = {secure: backend, backend: secure}
        with secure, backend, suppress(OSError):
            while True:
                # TLS may hold decrypted bytes that select() cannot see.
                ready = [secure] if secure.pending() else select.select([secure, backend], [], [], 30)[0]
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peer[sock].sendall(data)

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            raw.settimeout(10)
            try:
                secure = context.wrap_socket(raw, server_side=True)
            except OSError:  # the client refused the certificate
                raw.close()
                continue
            secure.settimeout(None)
            backend = socket.socket()
            backend.connect(("127.0.0.1", port))  # not create_connection: the tests count the client's
            threading.Thread(target=relay, args=(secure, backend), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_email_guard_connects_only_to_the_checked_address_when_dns_rebinds(
        guarded, monkeypatch, connections, dovecot, smtp, make_connector):
    """The check sees a public address; every later lookup (the stub's, and the OS resolver's
    that a by-name connection would use) answers loopback, where the real servers listen. The
    connections go to the checked public address only, and no lookup is made after the check."""
    asked = dns(monkeypatch, [PUBLIC], ["127.0.0.1"])
    os_resolver(monkeypatch, "127.0.0.1")
    mailbox = make_connector("email", config=mailbox_config("imap.rebind.example", dovecot.port,
                                                            "smtp.rebind.example", smtp.port),
                             credentials={"username": USER, "password": PASSWORD})

    outcome = poll_connector(mailbox.pk)
    assert outcome.error == (f"cannot reach IMAP imap.rebind.example:{dovecot.port}: "
                             f"{PUBLIC} is the public internet")
    assert connections == [PUBLIC] and asked == ["imap.rebind.example"]

    asked = dns(monkeypatch, [PUBLIC], ["127.0.0.1"])  # the same for SMTP's name
    with pytest.raises(ProviderUnavailable, match=f"SMTP smtp.rebind.example:{smtp.port} failed: {PUBLIC} is"):
        mailbox.get_backend().send(outbound())
    assert connections == [PUBLIC, PUBLIC] and asked == ["smtp.rebind.example"]
    assert smtp.logins == [] and smtp.received == []


@pytest.mark.parametrize(("answer", "kind"), [
    (["10.1.2.3"], "private: 10.1.2.3"),
    ([PUBLIC, "169.254.169.254"], "link-local: 169.254.169.254"),  # one inward address is enough
    (["::ffff:127.0.0.1"], "IPv4-mapped: ::ffff:127.0.0.1"),
])
def test_email_guard_refuses_a_server_that_resolves_inward_and_says_so_on_the_connector(
        guarded, monkeypatch, connections, make_connector, answer, kind):
    dns(monkeypatch, answer)
    mailbox = make_connector("email", config=mailbox_config("imap.inward.example", 993, "smtp.inward.example", 587),
                             credentials={"username": USER, "password": PASSWORD})

    outcome = poll_connector(mailbox.pk)
    mailbox.refresh_from_db()
    assert outcome.error == f"imap.inward.example resolves to a non-public address ({kind})"
    assert mailbox.last_error == f"ProviderRejected: {outcome.error}" and mailbox.health == Health.DEGRADED
    with pytest.raises(ProviderRejected, match=rf"^smtp\.inward\.example resolves to a non-public address \({kind}"):
        mailbox.get_backend().send(outbound())
    with pytest.raises(ProviderRejected, match=r"^imap\.inward\.example resolves to a non-public"):
        mailbox.get_backend().check_connection()
    assert connections == []


@pytest.mark.parametrize("smtp_security", ["ssl", "starttls"])
def test_email_pinned_connections_verify_tls_against_the_server_name(
        monkeypatch, tmp_path, connections, dovecot, make_connector, smtp_security):
    """Private addresses allowed (the test settings): the name resolves to loopback through the
    stub only (the OS resolver knows no *.example name), so the servers are reached by the checked
    address alone, while TLS sends the name (SNI) and checks the certificate, made for NAME only."""
    context, names = server_context(tmp_path, monkeypatch)
    contexts = {"ssl_context": context} if smtp_security == "ssl" else {"tls_context": context}
    smtp = FakeSMTP(USER, PASSWORD, **contexts).start()
    os_resolver(monkeypatch, None)
    asked = dns(monkeypatch, ["127.0.0.1"])
    try:
        with tls_relay(dovecot.port, context) as imaps_port:
            config = mailbox_config(NAME, imaps_port, NAME, smtp.port, smtp_security=smtp_security)
            mailbox = make_connector("email", config=config, credentials={"username": USER, "password": PASSWORD})
            words = mailbox.get_backend().check_connection()
            assert words == (f"Signed in as {USER} on {NAME}; Support has 0 messages. "
                             f"Signed in to {NAME} for replies (nothing sent).")
            assert smtp.logins == [USER]
            assert [name for name in names if name] == [NAME, NAME]  # aiosmtpd's own start check sends none
            assert connections == ["127.0.0.1", "127.0.0.1"] and asked == [NAME, NAME]

            # Another name on the same address: its certificate does not match, so nothing signs in.
            other = make_connector("email", credentials={"username": USER, "password": PASSWORD},
                                   config=mailbox_config("imap.other.example", imaps_port,
                                                         "smtp.other.example", smtp.port, smtp_security=smtp_security))
            with pytest.raises(ProviderUnavailable, match=mismatch("imap.other.example")):
                other.get_backend().check_connection()
            with pytest.raises(ProviderUnavailable, match=mismatch("smtp.other.example")):
                other.get_backend().send(outbound())
            assert smtp.logins == [USER] and smtp.received == []
    finally:
        smtp.stop()
