"""IMAP and SMTP connections pinned to addresses that were checked (listening.http.guard_host).

imaplib and smtplib connect by name, so a name resolved once for the check and again for the
connection could answer a public address, then 127.0.0.1 (DNS rebinding). These classes open
their socket to the checked addresses instead, and TLS (implicit or STARTTLS) still names the
server: SNI and the certificate check use the host name, never the address.

Each overrides the one internal hook that opens the socket, in the versions pinned in
requirements.txt: imaplib's `_create_socket` (through IMAPClient's `_create_IMAP4`) and smtplib's
`_get_socket`; tests/listening/test_email_guard.py fails if an upgrade goes around them.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

from imapclient import IMAPClient, imap4, tls


def connect(addresses: list[str], port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to the first of the checked `addresses` that accepts one."""
    failure: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            failure = exc
    if failure is None:
        raise OSError("no checked address to connect to")
    raise failure


def _wrap(sock: socket.socket, context: ssl.SSLContext | None, host: str) -> socket.socket:
    """TLS over `sock`, verified against the host name; the socket is closed if that fails."""
    try:
        return tls.wrap_socket(sock, context, host)
    except BaseException:
        sock.close()
        raise


class _PinnedIMAP4(imap4.IMAP4WithTimeout):
    def __init__(self, host: str, port: int, timeout: float | None, addresses: list[str]) -> None:
        self.addresses = addresses
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return connect(self.addresses, self.port, timeout if timeout is not None else self._timeout)


class _PinnedIMAP4TLS(tls.IMAP4_TLS):
    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, timeout: float | None,
                 addresses: list[str]) -> None:
        self.addresses = addresses
        super().__init__(host, port, context, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = connect(self.addresses, self.port, timeout if timeout is not None else self._timeout)
        return _wrap(sock, self.ssl_context, self.host)


class PinnedIMAPClient(IMAPClient):
    """IMAPClient connected to one of `addresses`; `host` is the name TLS verifies (its STARTTLS
    goes through imaplib, which names self.host, still the name)."""

    def __init__(self, host: str, addresses: list[str], **kwargs: object) -> None:
        self.addresses = addresses
        super().__init__(host, **kwargs)  # type: ignore[arg-type]

    def _create_IMAP4(self) -> imap4.IMAP4WithTimeout | tls.IMAP4_TLS:  # noqa: N802 (IMAPClient's name)
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _PinnedIMAP4TLS(self.host, self.port, self.ssl_context, timeout, self.addresses)
        return _PinnedIMAP4(self.host, self.port, timeout, self.addresses)


class PinnedSMTP(smtplib.SMTP):
    """smtplib.SMTP connected to one of `addresses`; starttls() names `host` (smtplib's _host)."""

    def __init__(self, host: str, port: int, addresses: list[str], *, timeout: float) -> None:
        self.addresses = addresses
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return connect(self.addresses, port, timeout)


class PinnedSMTPSSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL connected to one of `addresses`, its TLS verified against `host`."""

    def __init__(self, host: str, port: int, addresses: list[str], *, timeout: float,
                 context: ssl.SSLContext) -> None:
        self.addresses = addresses
        super().__init__(host, port, timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _wrap(connect(self.addresses, port, timeout), self.context, self._host)
