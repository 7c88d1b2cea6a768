"""The email connector against real mail servers on loopback (tests/fakes/mailserver.py): Debian's
Dovecot for IMAP (polling, UIDVALIDITY, IDLE, backfill) and aiosmtpd for SMTP (replies), with
mail from tests/fixtures/email/ delivered by IMAP APPEND.

Dovecot comes from apt (`.ci/run` installs it). Without it these tests are skipped locally, and
fail in CI (the CI environment variable is set), as the browser tests do without Chromium."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from listening.connectors import get_connector_class
from listening.connectors.base import OutboundReply
from listening.connectors.email import EmailConnector, reply_subject
from listening.connectors.email_parse import strip_quoted
from listening.exceptions import ConfigInvalid, ProviderAuthError, ProviderRejected, ProviderUnavailable
from listening.models import Attachment, Connector, Conversation, Health, Message
from listening.polling import poll_connector
from responses.models import Role, Team
from responses.replies import deliver, send_reply
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.fakes.mailserver import PASSWORD, USER, Dovecot, FakeSMTP, require_dovecot
from tests.responses.conftest import classify, make_user

# The local SMTP server takes AUTH without TLS on loopback, as it is meant to here.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "email"
_folders = itertools.count(1)


def fixture(name: str, **replace: str) -> bytes:
    raw = (FIXTURES / name).read_bytes()
    for key, value in replace.items():
        raw = raw.replace(f"REPLACE-{key}".encode(), value.encode())
    return raw


def mail(n: int, *, text: str = "", sender: str = "customer@example.com", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Customer {n} <{sender}>"
    message["To"] = "care@acme.test"
    message["Subject"] = headers.pop("subject", f"problem number {n}")
    message["Date"] = headers.pop("date", "Mon, 02 Nov 2026 09:00:00 +0000")
    message["Message-ID"] = headers.pop("message_id", f"<m{n}.{time.time_ns()}@example.com>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text or f"problem number {n}")
    return message


# --- Servers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dovecot():
    require_dovecot()
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def folder(dovecot) -> str:
    """A fresh mailbox for each test on the module's server."""
    name = f"Support{next(_folders)}"
    dovecot.create(name)
    return name


@pytest.fixture
def smtp():
    server = FakeSMTP(USER, PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _media_and_no_model(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CXM_CLASSIFY_ON_INGEST = False


@pytest.fixture
def config(dovecot, folder, smtp) -> dict:
    return {"imap_host": "127.0.0.1", "imap_port": dovecot.port, "imap_security": "plain", "mailbox": folder,
            "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "plain",
            "from_address": "care@acme.test", "from_name": "Acme Care", "page_size": 2}


@pytest.fixture
def mailbox(make_connector, config) -> Connector:
    return make_connector("email", slug="care", config=config, credentials={"username": USER, "password": PASSWORD})


def stored(**filters) -> list[Message]:
    return list(Message.objects.filter(**filters).select_related("author", "conversation").order_by("id"))


# --- Polling -------------------------------------------------------------------------------------
def test_email_is_registered():
    assert get_connector_class("email") is EmailConnector
    assert EmailConnector.supports_backfill and EmailConnector.polls
    assert set(EmailConnector.config_help) == set(EmailConnector.config_defaults)
    assert set(EmailConnector.credential_help) == set(EmailConnector.credential_fields)


def test_email_poll_stores_new_mail_once_and_never_marks_it_seen(dovecot, folder, mailbox):
    for _ in range(3):  # the same email delivered three times
        dovecot.append(folder, fixture("plain.eml"))
    outcome = poll_connector(mailbox.pk)
    assert (outcome.error, outcome.pages, outcome.created, outcome.duplicates) == ("", 2, 1, 2)
    again = poll_connector(mailbox.pk, force=True)
    assert (again.error, again.created, again.duplicates) == ("", 0, 0)

    [message] = stored()
    assert message.external_id == "CAF=ada.4411@mail.example.org"
    assert (message.channel, message.direction) == ("email", "in")
    assert message.text == ("Hello,\n\nmy kettle (order 4411) arrived with a cracked lid and no manual. Could you "
                            "send a replacement? Café déjà vu, this happened before.\n\nAda")
    assert message.sent_at == datetime(2026, 11, 2, 9, 14, 7, tzinfo=UTC)
    author = message.author
    assert (author.external_id, author.email, author.display_name, author.email_verified) == (
        "ada@example.org", "ada@example.org", "Adá Lovelace", False)
    assert message.conversation.subject == "Kettle lid cracked — order 4411"  # RFC 2047 decoded
    assert message.conversation.external_id == message.external_id
    assert message.raw["headers"]["message-id"] == "<CAF=ada.4411@mail.example.org>"
    assert all(b"\\Seen" not in flags for flags in dovecot.flags(folder).values())
    mailbox.refresh_from_db()
    assert set(mailbox.cursor) == {"uidvalidity", "last_uid", "last_date", "first_uid"}
    assert (mailbox.cursor["first_uid"], mailbox.cursor["last_uid"]) == (1, 3)
    assert mailbox.cursor["last_date"] == timezone.now().date().isoformat()
    assert (mailbox.health, mailbox.messages_received, mailbox.duplicates_received) == (Health.OK, 1, 2)


def test_email_poll_reads_pages_oldest_first_and_moves_the_cursor(dovecot, folder, mailbox):
    uids = [dovecot.append(folder, mail(n)) for n in range(1, 6)]
    first = poll_connector(mailbox.pk, max_pages=1)
    assert (first.error, first.pages, first.created) == ("", 1, 2)
    mailbox.refresh_from_db()
    assert mailbox.cursor["last_uid"] == uids[1]
    assert [m.text for m in stored()] == ["problem number 1", "problem number 2"]
    rest = poll_connector(mailbox.pk, force=True)
    assert (rest.error, rest.pages, rest.created) == ("", 2, 3)
    newest = dovecot.append(folder, mail(6))
    last = poll_connector(mailbox.pk, force=True)
    assert (last.error, last.pages, last.created, last.duplicates) == ("", 1, 1, 0)  # only the new UID is read
    mailbox.refresh_from_db()
    assert mailbox.cursor["last_uid"] == newest
    assert [m.text for m in stored()] == [f"problem number {n}" for n in range(1, 7)]


def test_email_new_uidvalidity_rereads_only_mail_since_the_day_before(dovecot, folder, mailbox):
    old = [mail(n) for n in (1, 2)]
    for message in old:
        dovecot.append(folder, message)
    assert poll_connector(mailbox.pk).created == 2
    mailbox.refresh_from_db()
    before = mailbox.cursor["uidvalidity"]

    new_validity = dovecot.recreate(folder)  # the server rebuilt the mailbox: every UID is new
    assert new_validity != before
    dovecot.append(folder, mail(3, subject="from last year"), when=datetime.now(UTC) - timedelta(days=400))
    for message in old:
        dovecot.append(folder, message)
    dovecot.append(folder, mail(4))
    outcome = poll_connector(mailbox.pk, force=True)
    assert (outcome.error, outcome.created, outcome.duplicates) == ("", 1, 2)
    assert "from last year" not in [m.conversation.subject for m in stored()]  # years of mail not re-read
    mailbox.refresh_from_db()
    assert (mailbox.cursor["uidvalidity"], mailbox.cursor["last_uid"], "since" in mailbox.cursor) == (
        new_validity, 4, False)


def test_email_reply_chain_threads_into_one_conversation(django_user_model, dovecot, folder, mailbox, smtp):
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    team.connectors.add(mailbox)
    agent = make_user(django_user_model, "agent_a", Role.AGENT, [team])
    dovecot.append(folder, fixture("plain.eml"))
    poll_connector(mailbox.pk)
    [first] = stored()
    classify(first)
    route_messages([first.pk])

    reply = send_reply(agent, first.conversation.case.pk, "Sorry! A new lid is on its way.")
    assert deliver(reply.pk)[0] == "done"
    reply.refresh_from_db()
    assert reply.status == "delivered", reply.last_error
    [sent] = smtp.messages()
    assert smtp.received[0]["to"] == ["ada@example.org"]
    assert smtp.received[0]["from"] == "care@acme.test" and smtp.logins == [USER]
    assert str(sent["Subject"]) == "Re: Kettle lid cracked — order 4411"
    assert str(sent["From"]) == "Acme Care <care@acme.test>"
    assert str(sent["In-Reply-To"]) == "<CAF=ada.4411@mail.example.org>"
    assert str(sent["References"]) == "<CAF=ada.4411@mail.example.org>"
    assert str(sent["Message-ID"]) == f"<{reply.external_id}>" and reply.external_id.endswith("@acme.test")
    assert sent.get_content().strip() == "Sorry! A new lid is on its way."

    root = first.external_id
    dovecot.append(folder, fixture("quoted_reply.eml", ROOT=root, PARENT=reply.external_id))
    assert poll_connector(mailbox.pk, force=True).created == 1
    answer = Message.objects.get(external_id="quoted.1@example.fr")
    assert answer.conversation_id == first.conversation_id
    assert Conversation.objects.count() == 1
    assert answer.parent == reply.message  # our reply, stored when it was delivered
    assert answer.text == "Thanks, the new lid fits perfectly!"  # quoted history trimmed...
    assert "> Sorry about that, a new lid is on its way." in answer.raw["body"]  # ...but kept in raw
    assert answer.author.display_name == "Chloé"  # a raw UTF-8 header


def test_email_html_only_mail_is_stored_as_inert_text(dovecot, folder, mailbox):
    dovecot.append(folder, fixture("html_only.eml"))
    assert poll_connector(mailbox.pk).created == 1
    [message] = stored()
    assert message.text == "Your checkout is broken & I was charged twice.\n\nOrder 5521"
    for unsafe in ("<script", "alert", "onerror", "javascript:", "<img", "color:red"):
        assert unsafe not in message.text


@pytest.mark.parametrize(("text", "expected"), [
    ("Fine now.\n\nOn Mon, Nov 2, 2026 at 9:14 AM Acme <care@acme.test> wrote:\n> old words", "Fine now."),
    ("Merci !\n\nLe lun. 2 nov. 2026 à 09:14, Acme <care@acme.test> a écrit :\n> vieux", "Merci !"),
    ("Top\n\n-----Original Message-----\nFrom: Acme\nold", "Top"),
    ("> quoted first\nmy answer below\n> more quote", "my answer below"),
    ("> only a quote", ""),
    ("Nothing quoted, and On my honour I wrote: this stays", "Nothing quoted, and On my honour I wrote: this stays"),
])
def test_email_strip_quoted(text, expected):
    assert strip_quoted(text) == expected


def test_email_broken_charset_and_encoded_words_are_decoded_with_replacement(dovecot, folder, mailbox):
    dovecot.append(folder, fixture("broken_charset.eml"))
    assert poll_connector(mailbox.pk).error == ""
    [message] = stored()
    assert message.text == "The refund \ufffd\ufffd never came \ufffd back."
    assert message.conversation.subject.endswith("subject")


def test_email_unreadable_malformed_and_empty_mail_never_stop_the_mailbox(dovecot, folder, mailbox):
    names = ["plain.eml", "garbage.eml", "malformed_mime.eml", "no_body.eml", "no_message_id.eml", "html_only.eml"]
    uids = [dovecot.append(folder, fixture(name)) for name in names]
    outcome = poll_connector(mailbox.pk)
    assert (outcome.error, outcome.created) == ("", 5)
    by_id = {m.external_id: m for m in stored()}
    assert "my order never arrived" in by_id["malformed.3@example.com"].text  # an unsplit multipart, as text
    assert by_id["malformed.3@example.com"].raw["defects"]
    assert by_id["empty.5@example.com"].text == "Call me back please"  # no body: the subject speaks
    [no_id] = [key for key in by_id if key.startswith("sha256-")]
    assert by_id[no_id].text == "Tracking says delivered, it is not here."
    mailbox.refresh_from_db()
    assert mailbox.cursor["last_uid"] == uids[-1]  # moved past the garbage
    assert mailbox.cursor["skipped"] == [{"uid": uids[1], "reason": "the email has no sender address (From)"}]
    assert mailbox.health == Health.OK

    dovecot.append(folder, fixture("no_message_id.eml"))  # read again: the hash dedupes it
    again = poll_connector(mailbox.pk, force=True)
    assert (again.created, again.duplicates) == (0, 1)


# --- Attachments ---------------------------------------------------------------------------------
def with_file(n: int, content: bytes, filename: str, content_type: str = "application/pdf",
              **headers: str) -> EmailMessage:
    message = mail(n, text="see attached", **headers)
    maintype, subtype = content_type.split("/")
    message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message


def test_email_25mb_attachment_is_listed_not_kept_and_reading_goes_on(dovecot, folder, mailbox):
    dovecot.append(folder, with_file(1, os.urandom(25_000_000), "scan.pdf"))
    dovecot.append(folder, mail(2))
    outcome = poll_connector(mailbox.pk)
    assert (outcome.error, outcome.created) == ("", 2)
    big, after = stored()
    assert big.text == "see attached" and after.text == "problem number 2"
    [attachment] = big.attachments.all()
    assert (attachment.filename, attachment.content_type, attachment.file.name) == ("scan.pdf", "application/pdf", "")
    assert attachment.skipped_reason.startswith("the email is 34 MB, more than is read of one email")
    assert big.raw["cut"] is True
    assert not (Path(django_settings.MEDIA_ROOT) / "attachments").exists()


def test_email_attachment_over_the_cap_is_listed_with_its_size(dovecot, folder, make_connector, config):
    small = make_connector("email", config={**config, "max_attachment_bytes": 100_000},
                           credentials={"username": USER, "password": PASSWORD})
    dovecot.append(folder, with_file(1, os.urandom(300_000), "photo.jpg", "image/jpeg"))
    assert poll_connector(small.pk).created == 1
    [attachment] = Attachment.objects.all()
    assert (attachment.size, attachment.skipped_reason, attachment.file.name) == (
        300_000, "larger than 100 KB, not kept", "")


@pytest.fixture
def case_with_file(django_user_model, dovecot, folder, mailbox):
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    team.connectors.add(mailbox)
    other = Team.objects.create(name="Other", slug="other")
    ensure_default_queues(other)
    content = b"%PDF-1.4 invoice 5521 " + os.urandom(2000)
    dovecot.append(folder, with_file(1, content, 'in"voice<5521>.pdf'))
    dovecot.append(folder, with_file(2, content, "copy.pdf"))  # the same bytes again: one file
    poll_connector(mailbox.pk)
    first = stored()[0]
    classify(first)
    route_messages([first.pk])
    return {"case": first.conversation.case, "content": content, "message": first,
            "agent": make_user(django_user_model, "agent_a", Role.AGENT, [team]),
            "outsider": make_user(django_user_model, "agent_b", Role.AGENT, [other])}


def test_email_attachment_is_stored_content_addressed_and_downloaded_from_its_case(client, case_with_file):
    content, case = case_with_file["content"], case_with_file["case"]
    digest = hashlib.sha256(content).hexdigest()
    attachment = case_with_file["message"].attachments.get()
    assert (attachment.filename, attachment.size, attachment.sha256) == ("invoice5521.pdf", len(content), digest)
    assert attachment.file.name == f"attachments/{digest[:2]}/{digest}"
    assert [a.file.name for a in Attachment.objects.all()] == [attachment.file.name] * 2
    assert len(list((Path(django_settings.MEDIA_ROOT) / "attachments" / digest[:2]).iterdir())) == 1

    client.force_login(case_with_file["agent"])
    page = client.get(reverse("console:case", kwargs={"case_id": case.pk})).content.decode()
    url = reverse("console:case-attachment", kwargs={"case_id": case.pk, "attachment_id": attachment.pk})
    assert f'href="{url}"' in page and "invoice5521.pdf" in page
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == content
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="invoice5521.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_email_attachment_download_is_refused_to_who_cannot_see_the_case(client, case_with_file):
    case = case_with_file["case"]
    attachment = case_with_file["message"].attachments.get()
    url = reverse("console:case-attachment", kwargs={"case_id": case.pk, "attachment_id": attachment.pk})
    client.force_login(case_with_file["outsider"])
    response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 404 and response.json()["reason"]
    assert case_with_file["content"] not in response.content
    client.force_login(case_with_file["agent"])  # an attachment of another case, through this one
    other = Attachment.objects.exclude(message__conversation=case.conversation).get()
    wrong = reverse("console:case-attachment", kwargs={"case_id": case.pk, "attachment_id": other.pk})
    assert client.get(wrong, HTTP_ACCEPT="application/json").status_code == 404


def test_email_attachment_of_a_dangerous_type_downloads_as_bytes(client, case_with_file, dovecot, folder,
                                                                 mailbox):
    dovecot.append(folder, with_file(3, b"<svg onload=alert(1)>", "x.svg", "image/svg+xml",
                                     in_reply_to=f"<{case_with_file['message'].external_id}>"))
    poll_connector(mailbox.pk, force=True)
    svg = Attachment.objects.get(filename="x.svg")
    assert svg.message.conversation_id == case_with_file["case"].conversation_id
    client.force_login(case_with_file["agent"])
    response = client.get(reverse("console:case-attachment",
                                  kwargs={"case_id": case_with_file["case"].pk, "attachment_id": svg.pk}))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


# --- Sending -------------------------------------------------------------------------------------
def outbound(**fields) -> OutboundReply:
    return OutboundReply(**{"text": "We are on it.", "channel": "email", "recipient_id": "ada@example.org",
                            "thread_id": "root.1@example.org", "in_reply_to": "last.2@example.org",
                            "subject": "Re: RE: Kettle", **fields})


def test_email_send_sets_threading_headers(mailbox, smtp):
    external_id = mailbox.get_backend().send(outbound())
    [sent] = smtp.messages()
    assert str(sent["Subject"]) == "Re: Kettle"
    assert str(sent["In-Reply-To"]) == "<last.2@example.org>"
    assert str(sent["References"]) == "<root.1@example.org> <last.2@example.org>"
    assert str(sent["Message-ID"]) == f"<{external_id}>"
    # An id that is a hash of a mail without a Message-ID is not named in headers.
    mailbox.get_backend().send(outbound(thread_id="sha256-abc", in_reply_to="sha256-abc"))
    assert "In-Reply-To" not in smtp.messages()[1]


@pytest.mark.parametrize(("stage", "answer", "error", "words"), [
    ("RCPT", "550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown", ProviderRejected,
     "550 5.1.1 <ada@example.org>: Recipient address rejected"),
    ("DATA", "451 4.3.0 Temporary local problem, try later", ProviderUnavailable, "451 4.3.0 Temporary local"),
    ("DATA", "554 5.7.1 Message rejected as spam", ProviderRejected, "554 5.7.1 Message rejected as spam"),
])
def test_email_send_maps_smtp_answers(mailbox, smtp, stage, answer, error, words):
    smtp.fail(stage, answer)
    with pytest.raises(error) as caught:
        mailbox.get_backend().send(outbound())
    assert words in str(caught.value)
    assert smtp.received == []


def test_email_send_with_a_wrong_smtp_password_is_an_auth_error(make_connector, config, smtp):
    wrong = make_connector("email", config=config, credentials={"username": USER, "password": PASSWORD,
                                                                 "smtp_password": "not-the-password"})
    with pytest.raises(ProviderAuthError) as caught:
        wrong.get_backend().send(outbound())
    assert "535" in str(caught.value) and "not-the-password" not in str(caught.value)
    assert smtp.received == []


def test_email_reply_subject_and_rules(mailbox):
    assert reply_subject("Fwd: Re:  Kettle\r\nBcc: x@evil.test") == "Re: Kettle Bcc: x@evil.test"
    assert reply_subject("") == "Re: your message"
    rules = mailbox.get_backend().reply_rules("email")
    assert (rules.max_chars, rules.media, rules.window_hours) == (100_000, False, None)


# --- Setup ---------------------------------------------------------------------------------------
def test_email_check_connection_signs_in_to_both_servers_and_sends_nothing(dovecot, folder, mailbox, smtp):
    dovecot.append(folder, mail(1))
    words = mailbox.get_backend().check_connection()
    assert words == (f"Signed in as {USER} on 127.0.0.1; {folder} has 1 message. "
                     "Signed in to 127.0.0.1 for replies (nothing sent).")
    assert smtp.logins == [USER] and smtp.received == []
    assert Message.objects.count() == 0


def test_email_check_connection_with_a_wrong_password_says_so(make_connector, config):
    wrong = make_connector("email", config=config, credentials={"username": USER, "password": "wrong-pass-77"})
    with pytest.raises(ProviderAuthError) as caught:
        wrong.get_backend().check_connection()
    assert f"refused the sign-in of {USER}" in str(caught.value)
    assert "AUTHENTICATIONFAILED" in str(caught.value) and "wrong-pass-77" not in str(caught.value)
    outcome = poll_connector(wrong.pk)
    wrong.refresh_from_db()
    assert outcome.error and wrong.health == Health.DEGRADED and "wrong-pass-77" not in wrong.last_error


def test_email_private_or_cleartext_servers_are_refused(settings, make_connector, config):
    tls = make_connector("email", config={**config, "imap_security": "ssl", "smtp_security": "starttls"},
                         credentials={"username": USER, "password": PASSWORD})
    settings.ALLOW_PRIVATE_URLS = False
    outcome = poll_connector(tls.pk)
    assert outcome.error == "127.0.0.1 resolves to a non-public address (loopback: 127.0.0.1)"
    with pytest.raises(ProviderRejected, match="127.0.0.1 resolves to a non-public address"):
        tls.get_backend().send(outbound())
    with pytest.raises(ProviderRejected, match="non-public"):
        tls.get_backend().check_connection()
    # Clear text only to this machine, and only where private addresses are allowed.
    with pytest.raises(ConfigInvalid, match="plain"):
        EmailConnector.validate_config(config)
    settings.ALLOW_PRIVATE_URLS = True
    assert EmailConnector.validate_config(config)["imap_security"] == "plain"
    with pytest.raises(ConfigInvalid, match="plain"):
        EmailConnector.validate_config({**config, "imap_host": "imap.example.com"})


@pytest.mark.parametrize(("change", "words"), [
    ({"imap_host": ""}, "imap_host"),
    ({"imap_port": 0}, "imap_port"),
    ({"imap_security": "tls"}, "imap_security"),
    ({"mailbox": "IN\r\nBOX"}, "mailbox"),
    ({"from_address": ""}, "from_address is needed"),
    ({"page_size": 1000}, "page_size"),
    ({"sieve": True}, "unknown config keys"),
])
def test_email_config_is_checked(change, words):
    config = {"imap_host": "imap.example.com", "smtp_host": "smtp.example.com", "from_address": "care@acme.test"}
    assert EmailConnector.validate_config(config)["imap_port"] == 993
    with pytest.raises(ConfigInvalid, match=words):
        EmailConnector.validate_config({**config, **change})


def test_email_backfill_walks_older_mail_newest_first(dovecot, folder, mailbox):
    now = datetime.now(UTC)
    dovecot.append(folder, mail(1, subject="too old"), when=now - timedelta(days=40))
    for n in (2, 3, 4):
        dovecot.append(folder, mail(n, subject=f"old {n}"), when=now - timedelta(days=10))
    dovecot.append(folder, mail(5))  # today's: read by the first poll
    assert poll_connector(mailbox.pk).created == 1
    mailbox.refresh_from_db()
    backend = mailbox.get_backend()
    since = now - timedelta(days=20)
    first = backend.backfill(since, {})
    assert [m.subject for m in first.messages] == ["old 3", "old 4"] and first.more
    second = backend.backfill(since, first.cursor)
    assert [m.subject for m in second.messages] == ["old 2"] and not second.more
    assert second.cursor["below"] == 2
    assert all(b"\\Seen" not in flags for flags in dovecot.flags(folder).values())


# --- IDLE ----------------------------------------------------------------------------------------
def test_watch_mailbox_stores_new_mail_within_seconds(dovecot, folder, mailbox):
    dovecot.append(folder, mail(1))
    appended_at = {}

    def deliver_later():
        appended_at["t"] = timezone.now()
        dovecot.append(folder, mail(2))

    timer = threading.Timer(2.0, deliver_later)
    timer.start()
    out = StringIO()
    try:
        call_command("watch_mailbox", connector="care", max_seconds=5, check_seconds=1, stdout=out)
    finally:
        timer.join()
    assert out.getvalue().splitlines() == ["idling", "caught up: 1 new", "new mail: 1 new"]
    late = Message.objects.get(text="problem number 2")
    assert late.received_at - appended_at["t"] < timedelta(seconds=2)  # the poll schedule would take 60 s

    out = StringIO()  # IDLE renewed every 0.6 s (25 minutes by default), each time with a poll
    call_command("watch_mailbox", connector="care", max_seconds=2, check_seconds=1, renew_minutes=0.01, stdout=out)
    assert out.getvalue().splitlines()[:3] == ["idling", "caught up: 0 new", "renewed: 0 new"]


def test_watch_mailbox_reconnects_after_a_failure_and_checks_its_arguments(make_connector, config):
    make_connector("email", slug="locked", config=config, credentials={"username": USER, "password": "nope-1234"})
    err = StringIO()
    call_command("watch_mailbox", connector="locked", max_seconds=3, stdout=StringIO(), stderr=err)
    failures = err.getvalue().splitlines()
    assert failures[0].startswith(f"watching failed (1 in a row): IMAP 127.0.0.1:{config['imap_port']} refused "
                                  f"the sign-in of {USER}")
    assert len(failures) >= 2 and failures[1].startswith("watching failed (2 in a row)")  # it tried again
    assert "nope-1234" not in err.getvalue()
    with pytest.raises(CommandError, match="at most 29"):
        call_command("watch_mailbox", connector="locked", renew_minutes=30)
    with pytest.raises(CommandError, match="no email connector"):
        call_command("watch_mailbox", connector="nobody")


# --- Hostile dates -------------------------------------------------------------------------------
def test_email_date_with_an_offset_postgresql_refuses_never_stops_the_mailbox(dovecot, folder, mailbox):
    """Date: ... +2359 is valid to Python and refused by PostgreSQL (±15:59 at most). It once
    failed every poll, silently; now it is stored at its INTERNALDATE, flagged, and the good mail
    behind it is read in the same poll."""
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)  # a first poll reads since yesterday
    bad = dovecot.append(folder, mail(1, date="Mon, 02 Nov 2026 09:00:00 +2359"), when=received)
    good = dovecot.append(folder, mail(2, date="Mon, 02 Nov 2026 09:05:00 +0100"))
    outcome = poll_connector(mailbox.pk)
    assert (outcome.error, outcome.created, outcome.skipped) == ("", 2, 0)
    first, second = stored()
    assert first.sent_at == received
    assert first.raw["_cxm"] == {"sent_at_invalid": "Mon, 02 Nov 2026 09:00:00 +2359",
                                 "sent_at_reason": "its UTC offset +23:59 is beyond ±15:59"}
    assert second.text == "problem number 2" and second.sent_at == datetime(2026, 11, 2, 8, 5, tzinfo=UTC)
    assert "_cxm" not in second.raw
    mailbox.refresh_from_db()
    assert mailbox.cursor["last_uid"] == good > bad
    assert (mailbox.health, mailbox.consecutive_failures) == (Health.OK, 0)
    assert poll_connector(mailbox.pk, force=True).created == 0  # nothing left behind to retry


@pytest.mark.parametrize("date", ["Thu, 01 Jan 1001 00:00:00 -2359", "Fri, 31 Dec 9999 23:59:59 +2359",
                                  "Thu, 01 Jan 1970 00:00:00 +0000"])
def test_email_dates_at_the_calendar_edges_are_stored_at_the_received_time(dovecot, folder, mailbox, date):
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    dovecot.append(folder, mail(1, date=date), when=received)
    dovecot.append(folder, mail(2))
    assert poll_connector(mailbox.pk).created == 2
    first, second = stored()
    assert first.sent_at == received and first.raw["_cxm"]["sent_at_invalid"] == date
    assert second.sent_at == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
