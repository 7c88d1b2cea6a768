"""Email: a mailbox read over IMAP (polled, or pushed with IDLE by `manage.py watch_mailbox`),
answered over SMTP.

Setup: the support mailbox's IMAP server (`imap_host`, `imap_port` 993, `imap_security` "ssl",
"starttls" or "plain") and `mailbox` (INBOX), signed in with the credentials `username` and
`password` (an app password where the provider has them); replies go out through `smtp_host`
(`smtp_port` 587, `smtp_security` "starttls") from `from_address` / `from_name`, signed in with
`smtp_username` / `smtp_password`, which default to the IMAP ones. "plain" (no TLS) is refused
unless the server is on this machine's loopback and private URLs are allowed (a local trial);
servers that resolve to private addresses are refused unless private URLs are allowed. A server's
name is resolved and checked once per connection, and the socket goes to that checked address
(listening.connectors.email_transport) while TLS verifies the name: DNS cannot rebind it inward.

- polling opens the mailbox read-only (EXAMINE) and fetches with BODY.PEEK, so reading never
  marks mail \\Seen. The cursor is {"uidvalidity", "last_uid", "last_date", "first_uid"}: each
  poll reads UIDs above last_uid, `page_size` at a time, oldest first (`more` while others wait).
  A first poll, or one after the server changed UIDVALIDITY (the mailbox was rebuilt and every
  UID is new), starts over from the mail received since the day before `last_date` (yesterday on
  a first poll): what was stored already dedupes by Message-ID, and years of mail are not read
  again. Backfill walks down, newest first, from `first_uid` (the first UID polling read).
- one email is one message (see listening.connectors.email_parse for ids, threading, bodies and
  attachments). An email that cannot be stored (no sender address) is skipped, logged and
  listed in the cursor's "skipped" (the last 20), and reading goes on past it.
- an email larger than `max_attachment_bytes` * 4/3 + 1 MB (room for base64 and the text) is
  read only that far: its attachments that did not fit are listed with the reason.
- replies: a plain-text email to the customer's address, "Re: <subject>", with In-Reply-To
  and References naming the answered email and the thread's first, so the customer's mail
  program threads it, and a Message-ID of ours (on the from_address's domain), which is the
  reply's external id: the customer's answer then lands in the same conversation. SMTP 4xx is
  retried, 5xx is final with the server's words, a refused sign-in is an auth error. SMTP
  cannot drop a repeated send, so a send whose outcome is unknown is never repeated.
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any, NamedTuple

from django.conf import settings
from django.utils import timezone
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from listening import http
from listening.connectors import icons
from listening.connectors.base import BaseConnector, Channel, InboundMessage, OutboundReply, PollResult, ReplyRules
from listening.connectors.email_parse import ADDRESS_RE, Unreadable, parse_email
from listening.connectors.email_transport import PinnedIMAPClient, PinnedSMTP, PinnedSMTPSSL
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

SECURITIES = ("ssl", "starttls", "plain")
HOST_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}"
                     r"[A-Za-z0-9])?)*\.?|\[?[0-9A-Fa-f:.]{2,45}\]?")
MAILBOX_RE = re.compile(r"[^\x00-\x1f\x7f\"\\]{1,200}")
FETCH_BATCH_BYTES = 16_000_000  # one FETCH asks for this much mail at most
SKIPPED_KEPT = 20
MB = 1_000_000


class EmailConnector(BaseConnector):
    kind = "email"
    label = "Email mailbox"
    channel = "email"
    description = "A mailbox read over IMAP (polled or pushed), answered over SMTP."
    icon = icons.MAIL
    colour = "#6941c6"
    channels = (Channel("email", "Email"),)
    polls = True
    supports_backfill = True
    config_defaults = {
        "imap_host": "", "imap_port": 993, "imap_security": "ssl", "mailbox": "INBOX",
        "smtp_host": "", "smtp_port": 587, "smtp_security": "starttls", "from_address": "", "from_name": "",
        "max_attachment_bytes": 10 * MB, "page_size": 20,
    }
    credential_fields = ("username", "password", "smtp_username", "smtp_password")
    required_credentials = ("username", "password")
    config_help = {
        "imap_host": "The mailbox's IMAP server, e.g. imap.gmail.com or outlook.office365.com.",
        "imap_port": "993 for SSL (the usual), 143 for STARTTLS.",
        "imap_security": '"ssl" (port 993) or "starttls" (port 143). "plain" only for a server on this machine.',
        "mailbox": "The folder to read, INBOX unless support mail is filed elsewhere.",
        "smtp_host": "The SMTP server replies go out through, e.g. smtp.gmail.com. Empty: no replies.",
        "smtp_port": "587 for STARTTLS (the usual), 465 for SSL.",
        "smtp_security": '"starttls" (port 587) or "ssl" (port 465).',
        "from_address": "The address replies come from, usually the mailbox's own (support@brand.com).",
        "from_name": "The name shown beside it, e.g. Acme Support.",
        "max_attachment_bytes": "Attachments larger than this are listed but not kept (default 10 MB).",
        "page_size": "Emails read per request (1 to 100).",
    }
    credential_help = {
        "username": "The mailbox's sign-in name, usually its address.",
        "password": "Its password, or an app password where the provider requires one (Gmail, Outlook).",
        "smtp_username": "Only when SMTP signs in with another name than IMAP.",
        "smtp_password": "Only when SMTP signs in with another password than IMAP.",
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        _check_server(config, "imap", required=True)
        _check_server(config, "smtp", required=False)
        if not isinstance(config["mailbox"], str) or not MAILBOX_RE.fullmatch(config["mailbox"]):
            raise ConfigInvalid("mailbox must be a folder name, like INBOX")
        sender = config["from_address"]
        if not isinstance(sender, str) or (sender and not ADDRESS_RE.fullmatch(sender)):
            raise ConfigInvalid("from_address must be an email address, like support@brand.com")
        if config["smtp_host"] and not sender:
            raise ConfigInvalid("from_address is needed to send replies through smtp_host")
        if not isinstance(config["from_name"], str) or len(config["from_name"]) > 100:
            raise ConfigInvalid("from_name must be text of at most 100 characters")
        for key, low, high in (("max_attachment_bytes", 0, 50 * MB), ("page_size", 1, 100)):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigInvalid(f"{key} must be an integer from {low} to {high}")
        return config

    @property
    def checked_config(self) -> dict[str, Any]:
        return self.validate_config(dict(self.row.config or {}))

    # --- Polling -------------------------------------------------------------------------------
    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """The next page of mail above the cursor's UID, oldest first."""
        config = self.checked_config
        with self._imap(config) as imap:
            box = self._examine(imap, config)
            last_uid, since = _resume(cursor, box.validity)
            criteria: list[Any] = ["UID", f"{last_uid + 1}:*"] + (["SINCE", since] if since else [])
            uids = sorted(uid for uid in _search(imap, criteria) if uid > last_uid)
            page = uids[: config["page_size"]]
            messages, skipped, newest = self._read(imap, page, config)
        more = len(uids) > len(page)
        # Backfill starts below the first UID polling read under this UIDVALIDITY.
        first_uid = cursor.get("first_uid") if cursor.get("uidvalidity") == box.validity else None
        new_cursor: dict[str, Any] = {"uidvalidity": box.validity, "last_uid": max(page, default=last_uid),
                                      "last_date": max(filter(None, [newest, cursor.get("last_date")]), default=None),
                                      "first_uid": first_uid or min(page, default=box.uidnext) or None}
        if more and since:  # still walking a restart: the next page keeps its SINCE
            new_cursor["since"] = since.isoformat()
        new_cursor["skipped"] = ([*cursor.get("skipped", []), *skipped])[-SKIPPED_KEPT:]
        return PollResult(messages, {k: v for k, v in new_cursor.items() if v not in (None, [])}, more=more)

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """Mail received since `since`, below the polling cursor, newest first, a page at a time."""
        config = self.checked_config
        with self._imap(config) as imap:
            box = self._examine(imap, config)
            polled = self.row.cursor or {}
            if state.get("uidvalidity") != box.validity:
                state = {}
            polled_from = _int(polled.get("first_uid")) if polled.get("uidvalidity") == box.validity else 0
            top = _int(state.get("below")) or polled_from or box.uidnext
            uids: list[int] = []
            if top != 1 and box.count:  # top 0: the server did not say UIDNEXT, so from the newest
                span = f"1:{top - 1}" if top else "1:*"
                day = (since.astimezone(UTC) - timedelta(days=1)).date()  # the server's day may differ
                uids = sorted(uid for uid in _search(imap, ["UID", span, "SINCE", day]) if not top or uid < top)
            page = uids[-config["page_size"]:]
            messages, _skipped, _newest = self._read(imap, page, config)
        below = min(page) if page else (top or 1)
        return PollResult(messages, {"uidvalidity": box.validity, "below": below}, more=len(uids) > len(page))

    def _read(self, imap: IMAPClient, uids: list[int],
              config: dict[str, Any]) -> tuple[list[InboundMessage], list[dict[str, Any]], str | None]:
        """Fetch and parse `uids`: (messages, skipped emails with the reason, newest INTERNALDATE's
        day). One email that cannot be stored never keeps the others from being read."""
        if not uids:
            return [], [], None
        cap = config["max_attachment_bytes"]
        limit = cap * 4 // 3 + MB  # base64 grows a file by a third; room for the text beside it
        meta = _fetch(imap, uids, ["RFC822.SIZE", "INTERNALDATE"])
        messages, skipped, days = [], [], []
        for batch in _batches(uids, meta, limit):
            items = [f"BODY.PEEK[]<0.{limit}>" if _size(meta, uid) > limit else "BODY.PEEK[]" for uid in batch]
            fetched = {}
            for item in sorted(set(items)):
                fetched.update(_fetch(imap, [u for u, i in zip(batch, items, strict=True) if i == item], [item]))
            for uid in batch:
                raw = _body(fetched.get(uid, {}))
                if raw is None:
                    continue  # expunged between SEARCH and FETCH
                received = _aware(meta.get(uid, {}).get(b"INTERNALDATE"))
                if received:
                    days.append(received.date().isoformat())
                size = _size(meta, uid) or len(raw)
                try:
                    messages.append(parse_email(raw, uid=uid, size=size, cut=size > len(raw) and size > limit,
                                                max_attachment_bytes=cap, received_at=received,
                                                our_address=config["from_address"]))
                except Unreadable as exc:
                    logger.warning("email connector %s: UID %s skipped: %s", self.row.pk, uid, exc)
                    skipped.append({"uid": uid, "reason": str(exc)})
                except Exception as exc:  # a bug on some unforeseen mail must not stop the mailbox
                    logger.exception("email connector %s: UID %s could not be parsed", self.row.pk, uid)
                    skipped.append({"uid": uid, "reason": f"the email could not be read ({type(exc).__name__})"})
        return messages, skipped, max(days, default=None)

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        # Plain text only: replies carry no attachments.
        return ReplyRules(max_chars=100_000, media=False)

    def send(self, reply: OutboundReply) -> str:
        """Email the reply to the customer in their thread; return its Message-ID (no brackets)."""
        config = self.checked_config
        if not config["smtp_host"]:
            raise ProviderRejected("this mailbox has no smtp_host configured, so it cannot send replies")
        recipient = reply.recipient_id.strip()
        if not ADDRESS_RE.fullmatch(recipient):
            raise ProviderRejected(f"{recipient[:80]!r} is not an email address")
        message = self._reply_message(reply, config, recipient)
        with self._smtp(config) as smtp:
            smtp.send_message(message, from_addr=config["from_address"], to_addrs=[recipient])
        return str(message["Message-ID"]).strip("<>")

    def _reply_message(self, reply: OutboundReply, config: dict[str, Any], recipient: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = formataddr((_one_line(config["from_name"]), config["from_address"]))
        message["To"] = recipient
        message["Subject"] = reply_subject(reply.subject)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(idstring="cxm", domain=config["from_address"].rsplit("@", 1)[1])
        answered = [ref for ref in dict.fromkeys([reply.thread_id, reply.in_reply_to]) if "@" in ref]
        if answered:
            message["In-Reply-To"] = f"<{answered[-1]}>"
            message["References"] = " ".join(f"<{ref}>" for ref in answered)
        message["Auto-Submitted"] = "no"  # a person wrote it: autoresponders may answer
        message.set_content(reply.text)
        return message

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        config = self.checked_config
        with self._imap(config) as imap:
            count = self._examine(imap, config).count
        words = (f"Signed in as {self.credentials.get('username')} on {config['imap_host']}; "
                 f"{config['mailbox']} has {count} message{'s' if count != 1 else ''}")
        if not config["smtp_host"]:
            return f"{words}. No smtp_host: replies cannot be sent."
        with self._smtp(config):
            pass
        return f"{words}. Signed in to {config['smtp_host']} for replies (nothing sent)."

    # --- IMAP ----------------------------------------------------------------------------------
    @contextmanager
    def _imap(self, config: dict[str, Any]) -> Iterator[IMAPClient]:
        """A signed-in IMAP connection; every failure inside becomes a ProviderError."""
        host, port, security = config["imap_host"].strip("[]"), config["imap_port"], config["imap_security"]
        username, password = self._login("username", "password")
        addresses = _guard(host, port, security)
        where = f"IMAP {host}:{port}"
        try:
            client = PinnedIMAPClient(host, addresses, port=port, ssl=security == "ssl", ssl_context=_tls(),
                                      use_uid=True, timeout=settings.PROVIDER_HTTP_TIMEOUT)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ProviderUnavailable(f"cannot reach {where}: {_words(exc)}") from None
        try:
            client.normalise_times = False
            if security == "starttls":
                client.starttls(_tls())
            client.login(username, password)
        except LoginError as exc:
            _close(client)
            raise ProviderAuthError(f"{where} refused the sign-in of {username}: {_words(exc)}") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            _close(client)
            raise ProviderUnavailable(f"{where} failed during sign-in: {_words(exc)}") from None
        try:
            yield client
        except imaplib.IMAP4.abort as exc:
            raise ProviderUnavailable(f"{where} dropped the connection: {_words(exc)}") from None
        except imaplib.IMAP4.error as exc:
            raise ProviderUnavailable(f"{where} refused a command: {_words(exc)}") from None
        except OSError as exc:
            raise ProviderUnavailable(f"{where} connection failed: {_words(exc)}") from None
        finally:
            _close(client)

    def _examine(self, imap: IMAPClient, config: dict[str, Any]) -> MailboxStatus:
        """Open the mailbox read-only (EXAMINE: reading it changes no flags)."""
        try:
            status = imap.select_folder(config["mailbox"], readonly=True)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise ProviderRejected(f"mailbox {config['mailbox']!r} cannot be opened: {_words(exc)}") from None
        validity = _int(status.get(b"UIDVALIDITY"))
        if not validity:
            raise ProviderUnavailable(f"{config['imap_host']} gave no UIDVALIDITY for {config['mailbox']!r}")
        return MailboxStatus(validity, _int(status.get(b"EXISTS")), _int(status.get(b"UIDNEXT")))

    @contextmanager
    def idle(self) -> Iterator[IdleWatch]:
        """The mailbox opened in IDLE, for `manage.py watch_mailbox`: wait() says when mail came."""
        config = self.checked_config
        with self._imap(config) as imap:
            self._examine(imap, config)
            if not imap.has_capability("IDLE"):
                raise NotSupported(f"{config['imap_host']} does not offer IMAP IDLE: poll instead")
            imap.idle()
            watch = IdleWatch(imap)
            try:
                yield watch
            finally:
                watch.stop()

    # --- SMTP ----------------------------------------------------------------------------------
    @contextmanager
    def _smtp(self, config: dict[str, Any]) -> Iterator[smtplib.SMTP]:
        """A signed-in SMTP connection; failures become ProviderErrors by their reply code."""
        host, port, security = config["smtp_host"].strip("[]"), config["smtp_port"], config["smtp_security"]
        username, password = self._login("smtp_username", "smtp_password")
        addresses = _guard(host, port, security)
        where, smtp = f"SMTP {host}:{port}", None
        try:
            if security == "ssl":
                smtp = PinnedSMTPSSL(host, port, addresses, timeout=settings.PROVIDER_HTTP_TIMEOUT, context=_tls())
            else:
                smtp = PinnedSMTP(host, port, addresses, timeout=settings.PROVIDER_HTTP_TIMEOUT)
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=_tls())
                smtp.ehlo()
            smtp.login(username, password)
            yield smtp
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderAuthError(f"{where} refused the sign-in of {username}: {_smtp_words(exc)}",
                                    status=exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused as exc:
            code, words = next(iter(exc.recipients.values()), (550, b"refused"))
            raise _smtp_error(where, code, words) from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(where, exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderRejected(f"{where} cannot do this: {_words(exc)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ProviderUnavailable(f"{where} failed: {_words(exc)}") from None
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()  # the mail, if any, was accepted before: nothing to undo

    def _login(self, user_field: str, password_field: str) -> tuple[str, str]:
        """SMTP's sign-in defaults to IMAP's."""
        username = self.credentials.get(user_field) or self.credentials.get("username")
        password = self.credentials.get(password_field) or self.credentials.get("password")
        if not username or not password:
            raise ProviderAuthError("this connector has no username and password configured")
        return str(username), str(password)


class MailboxStatus(NamedTuple):
    validity: int
    count: int
    uidnext: int  # 0 when the server did not say


class IdleWatch:
    """An IMAP connection in IDLE. wait() returns True when the server announced new mail;
    renew() ends IDLE and starts it again, as servers drop an IDLE left alone for 30 minutes
    (the caller polls after it: what was announced as IDLE ended is not reported)."""

    def __init__(self, imap: IMAPClient) -> None:
        self.imap, self.idling = imap, True

    def wait(self, seconds: float) -> bool:
        return _new_mail(self.imap.idle_check(timeout=seconds))

    def renew(self) -> None:
        self.stop()
        self.imap.idle()
        self.idling = True

    def stop(self) -> None:
        if self.idling:
            self.idling = False
            with suppress(OSError, imaplib.IMAP4.error):  # the connection is closing anyway
                self.imap.idle_done()


def _new_mail(responses: list) -> bool:
    return any(len(item) >= 2 and item[1] in (b"EXISTS", b"RECENT") for item in responses)


def reply_subject(subject: str) -> str:
    subject = _one_line(subject)
    while re.match(r"(?i)(re|aw|sv|fwd?)\s*:\s*", subject):
        subject = re.sub(r"(?i)^(re|aw|sv|fwd?)\s*:\s*", "", subject, count=1)
    return f"Re: {subject}" if subject else "Re: your message"


def _check_server(config: dict[str, Any], prefix: str, *, required: bool) -> None:
    host, port, security = config[f"{prefix}_host"], config[f"{prefix}_port"], config[f"{prefix}_security"]
    if not isinstance(host, str) or (host or required) and not HOST_RE.fullmatch(host):
        raise ConfigInvalid(f"{prefix}_host must be a server name, like {prefix}.example.com")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConfigInvalid(f"{prefix}_port must be a port number from 1 to 65535")
    if security not in SECURITIES:
        raise ConfigInvalid(f"{prefix}_security must be one of {', '.join(SECURITIES)}")
    if host and security == "plain" and not (settings.ALLOW_PRIVATE_URLS and _loopback(host)):
        raise ConfigInvalid(f'{prefix}_security "plain" sends the password in clear: use "ssl" or "starttls"')


def _guard(host: str, port: int, security: str) -> list[str]:
    """The server's addresses, resolved once and checked (http.guard_host: private ones only where
    allowed), for the connection to go to them and never to the name again; no clear text beyond
    loopback, judged on those same addresses."""
    addresses = http.guard_host(host, port)
    if security == "plain" and not (settings.ALLOW_PRIVATE_URLS and _all_loopback(addresses)):
        raise ProviderRejected(f"{host} would get the password in clear: plain is for a server on this machine")
    return addresses


def _loopback(host: str) -> bool:
    try:
        addresses = http.resolve(host.strip("[]"), 0)
    except ProviderError:
        return False
    return _all_loopback(addresses)


def _all_loopback(addresses: list[str]) -> bool:
    return bool(addresses) and all(ipaddress.ip_address(address).is_loopback for address in addresses)


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _search(imap: IMAPClient, criteria: list[Any]) -> list[int]:
    return [int(uid) for uid in imap.search(criteria)]


def _fetch(imap: IMAPClient, uids: list[int], items: list[str]) -> dict[int, dict[bytes, Any]]:
    return imap.fetch(uids, items) if uids else {}


def _batches(uids: list[int], meta: dict[int, dict[bytes, Any]], limit: int) -> Iterator[list[int]]:
    """UIDs in FETCH-sized groups: about FETCH_BATCH_BYTES of mail each, at least one email."""
    batch, total = [], 0
    for uid in uids:
        size = min(_size(meta, uid), limit)
        if batch and total + size > FETCH_BATCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _body(item: dict[bytes, Any]) -> bytes | None:
    for key, value in item.items():
        if key.startswith(b"BODY[") and isinstance(value, bytes):
            return value
    return None


def _size(meta: dict[int, dict[bytes, Any]], uid: int) -> int:
    return _int(meta.get(uid, {}).get(b"RFC822.SIZE"))


def _resume(cursor: dict[str, Any], validity: int) -> tuple[int, date | None]:
    """(last UID read, SINCE day or None) for the next poll. Under a new UIDVALIDITY (or on a first
    poll) the old UIDs mean nothing: read again from the day before the newest mail seen (today
    on a first poll). A restart's walk keeps its SINCE day until it has caught up."""
    if cursor.get("uidvalidity") == validity:
        return _int(cursor.get("last_uid")), _day(cursor.get("since"))
    newest = _day(cursor.get("last_date")) or timezone.now().date()
    return 0, newest - timedelta(days=1)


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.get_fixed_timezone(0))


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _one_line(value: str) -> str:
    return " ".join(clean_text(value, 300).split())


def _words(exc: BaseException) -> str:
    """An exception's words, decoded and bounded (imaplib hands over bytes' reprs). An OSError
    from the system or from TLS carries (errno, words): the words, as "1" or "111" say nothing."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc.args[0] if exc.args else exc)
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    return clean_text(text, 300) or type(exc).__name__


def _smtp_words(exc: smtplib.SMTPResponseException) -> str:
    words = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {clean_text(words, 300)}"


def _smtp_error(where: str, code: int, words: bytes | str) -> ProviderError:
    """4xx: try again later; 5xx: final, in the server's words."""
    text = words.decode("utf-8", "replace") if isinstance(words, bytes) else str(words)
    reason = f"{where} answered {code} {clean_text(text, 300)}"
    if 400 <= code < 500:
        return ProviderUnavailable(reason, status=code)
    return ProviderRejected(reason, status=code)


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except (OSError, imaplib.IMAP4.error):
        with suppress(OSError, imaplib.IMAP4.error):
            client.shutdown()

