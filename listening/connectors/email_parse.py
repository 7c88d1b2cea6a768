"""One email (RFC 5322 bytes, as fetched over IMAP) to an InboundMessage, tolerating anything.

Mail is written by every program ever made, so nothing here trusts it: headers are read with the
standard library's modern policy and, where that fails, from their raw text; bodies are decoded
with their declared charset and replacement characters (an unknown charset reads as UTF-8); HTML
becomes inert text through listening.htmltext. The only mail refused (`Unreadable`) is mail with
no sender address, which could be neither attributed nor answered.

- the external id is the Message-ID without its angle brackets; mail without one gets a hash of
  its sender, recipients, date, subject and body, so reading it again still dedupes;
- the thread is the first id of References (the thread's root), else In-Reply-To, else the
  message itself; the parent is In-Reply-To;
- the text is the text/plain body, else the HTML body as text, with quoted history ("On ...
  wrote:" and the "> " lines after it) cut off; the whole body stays in `raw`;
- attachments over `max_attachment_bytes`, or cut off because the email was larger than what was
  fetched of it, are listed with the reason they were not kept.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from listening import location, times
from listening.connectors.base import InboundAttachment, InboundAuthor, InboundMessage
from listening.exceptions import PayloadInvalid
from listening.htmltext import html_to_text
from listening.sanitize import clean_text

CHANNEL = "email"
ID_MAX = 250
MAX_ATTACHMENTS = 50
RAW_BODY_CHARS = 20_000
DATE_OFFSET_RE = re.compile(r"\s([+-])(\d{4})(?:\s*\(.*\))?\s*$")
RAW_HEADERS = ("from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to", "references")
MSGID_RE = re.compile(r"<([^<>\s]{1,998})>")
BARE_ID_RE = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without spaces or angle brackets
ADDRESS_RE = re.compile(r"[^\s@<>\"(),;:\[\]]{1,64}@[^\s@<>\"(),;:\[\]]{1,253}")
# Where a quoted reply starts, in the words of the mail programs people use.
QUOTE_HEADERS = re.compile(
    r"^(On\s[^\n]{1,300}?(\n[^\n]{1,300}?)?\swrote:"
    r"|Le\s[^\n]{1,300}?(\n[^\n]{1,300}?)?\sa\s+écrit\s?:"
    r"|Am\s[^\n]{1,300}?(\n[^\n]{1,300}?)?\sschrieb[^\n]{0,200}:"
    r"|El\s[^\n]{1,300}?(\n[^\n]{1,300}?)?\sescribió:"
    r"|-{2,}\s*Original Message\s*-{2,}"
    r"|_{20,}\s*\nFrom:\s)\s*$",
    re.MULTILINE | re.IGNORECASE,
)


class Unreadable(ValueError):
    """This email cannot be stored as a message; the text says why."""


def parse_email(raw: bytes, *, uid: int, size: int, cut: bool, max_attachment_bytes: int,
                received_at: datetime | None = None, our_address: str = "") -> InboundMessage:
    """`raw` is what was fetched: all of the email, or its first bytes when `cut` (it is `size`
    bytes in all). Raises Unreadable only for mail without a sender address."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; this is a bug in it, not in the mail
        raise Unreadable(f"the email cannot be parsed: {type(exc).__name__}") from None
    sender, name = sender_of(message)
    body_part, text = body_of(message)
    subject = header(message, "subject").replace("\r", " ").replace("\n", " ").strip()
    own_id = first_id(header(message, "message-id"))
    references = all_ids(header(message, "references"))
    parent = first_id(header(message, "in-reply-to"))
    external_id = own_id or f"sha256-{fingerprint(message, raw)}"
    attachments, dropped = attachments_of(message, body_part, cut=cut, size=size, cap=max_attachment_bytes)
    trimmed = strip_quoted(text) or text or subject
    return InboundMessage(
        external_id=external_id,
        text=clean_text(trimmed),
        author=InboundAuthor(external_id=sender, handle=sender, display_name=clean_text(name, 200), email=sender),
        sent_at=sent_at(message, received_at),
        channel=CHANNEL,
        thread_id=next((ref for ref in references if ref != external_id), "") or parent or external_id,
        parent_external_id=parent if parent != external_id else "",
        subject=clean_text(subject, 300),
        direction="out" if our_address and sender == our_address.lower() else "in",
        raw={**raw_record(message, uid=uid, size=size, cut=cut, body=text, attachments=attachments, dropped=dropped),
             **sender_zone(message)},
        attachments=tuple(attachments),
    )


# --- Headers -------------------------------------------------------------------------------------
def header(message: EmailMessage, name: str) -> str:
    """A header's decoded value ("" when absent), from its raw text when the parser chokes on it."""
    try:
        value = message.get(name)
        return "" if value is None else clean_text(str(value))
    except Exception:  # a malformed header the modern policy cannot model
        raw = next((value for key, value in message.raw_items() if key.lower() == name), "")
        return clean_text(decode_words(str(raw)))


def decode_words(value: str) -> str:
    """RFC 2047 encoded words, leniently: an unknown charset or a broken word is left as written."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def first_id(value: str) -> str:
    ids = all_ids(value)
    return ids[0] if ids else ""


def all_ids(value: str) -> list[str]:
    """Message ids in a Message-ID, In-Reply-To or References header, without angle brackets.
    Ids too long to be keys, or with characters no id has, are left out."""
    found = MSGID_RE.findall(value) or ([value.strip()] if BARE_ID_RE.fullmatch(value.strip()) else [])
    return [item for item in found if len(item) <= ID_MAX and item.isascii() and item.isprintable()]


def sender_of(message: EmailMessage) -> tuple[str, str]:
    """(address lower-cased, display name) of From, else Sender; Unreadable when there is none."""
    for name in ("from", "sender"):
        value = header(message, name)
        for display, address in getaddresses([value]):
            address = address.strip().lower()
            if ADDRESS_RE.fullmatch(address) and len(address) <= 254:
                return address, decode_words(display).strip()
    raise Unreadable("the email has no sender address (From)")


def sent_at(message: EmailMessage, received_at: datetime | None) -> datetime:
    """The Date header in UTC; when it is missing or malformed, when the server received the
    email; when it is out of range (listening.times), that too, flagged with what it said."""
    fallback = received_at if received_at and received_at.tzinfo else datetime.now(UTC)
    stated_text = header(message, "date")
    try:
        stated = parsedate_to_datetime(stated_text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return fallback
    return times.source_time(stated, stated_text, received_at=fallback)


def sender_zone(message: EmailMessage) -> dict[str, Any]:
    """The offset of the Date header ("+0200") is the sender's clock: their time zone for the
    profile (listening.location), as {"time_zone": ...} on the raw. "+0000" and "-0000" say
    nothing (RFC 5322: -0000 is unknown, and +0000 is what servers and scripts stamp)."""
    found = DATE_OFFSET_RE.search(header(message, "date"))
    if not found or found.group(2) == "0000":
        return {}
    minutes = int(found.group(2)[:2]) * 60 + int(found.group(2)[2:])
    try:
        zone = location.offset_zone(-minutes if found.group(1) == "-" else minutes)
    except PayloadInvalid:
        return {}
    return location.time_zone_raw(zone, "date_header")


def fingerprint(message: EmailMessage, raw: bytes) -> str:
    """A stable hash for mail without a Message-ID: what the sender wrote, not the Received
    headers servers add on the way."""
    digest = hashlib.sha256()
    for name in ("from", "to", "cc", "date", "subject"):
        digest.update(header(message, name).encode("utf-8", "replace") + b"\n")
    _head, _sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    digest.update(body)
    return digest.hexdigest()[:48]


# --- Body ----------------------------------------------------------------------------------------
def body_of(message: EmailMessage) -> tuple[Any, str]:
    """(the part read as the body, its text): text/plain first, else HTML as inert text."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:  # a multipart whose boundary never came is one unsplit leaf: read it as text
        part = next((leaf for leaf in message.walk() if _unsplit(leaf)), None)
    if part is None:
        return None, ""
    text = decode_text(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return part, text.replace("\r\n", "\n").strip()


def decode_text(part: Any) -> str:
    """A text part's content in its declared charset, with replacement characters where the bytes
    do not fit; an unknown or bogus charset reads as UTF-8."""
    try:
        payload = part.get_payload(decode=True) or b""
    except Exception:
        return ""
    if isinstance(payload, str):
        return payload
    charset = (part.get_content_charset() or "utf-8").strip()
    try:
        return payload.decode(charset, "replace")
    except (LookupError, ValueError):
        return payload.decode("utf-8", "replace")


def strip_quoted(text: str) -> str:
    """The new words of a reply: cut at the first "On ... wrote:" line (or the like) and drop
    "> " quoted lines. Empty when nothing but a quote is left (the caller then keeps it all)."""
    found = QUOTE_HEADERS.search(text)
    if found:
        text = text[: found.start()]
    lines = [line for line in text.split("\n") if not line.lstrip().startswith(">")]
    return "\n".join(lines).strip()


# --- Attachments ---------------------------------------------------------------------------------
def attachments_of(message: EmailMessage, body_part: Any, *, cut: bool, size: int,
                   cap: int) -> tuple[list[InboundAttachment], int]:
    """Every leaf part that is not the body (nor its other rendering), kept up to `cap` bytes.
    When the email was `cut`, its last part ran past what was fetched: it is listed, not kept."""
    every_leaf = [part for part in message.walk() if not part.is_multipart()]
    cut_part = every_leaf[-1] if cut and every_leaf else None  # parsing stopped inside it
    leaves = [part for part in every_leaf
              if part is not body_part and not _alternative_body(part) and not _unsplit(part)]
    found = [_attachment(part, index, cap=cap, cut_off=part is cut_part, email_size=size)
             for index, part in enumerate(leaves[:MAX_ATTACHMENTS])]
    return found, max(0, len(leaves) - MAX_ATTACHMENTS)


def _unsplit(part: Any) -> bool:
    return part.get_content_maintype() == "multipart" and not part.is_multipart()


def _alternative_body(part: Any) -> bool:
    """A text part without a file name that is not marked as an attachment: the other rendering
    of the body (the HTML beside the plain text), not a file someone attached."""
    try:
        return (part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment"
                and not part.get_filename())
    except Exception:
        return False


def _attachment(part: Any, index: int, *, cap: int, cut_off: bool, email_size: int) -> InboundAttachment:
    content_type = part.get_content_type()
    try:
        filename = part.get_filename() or ""
    except Exception:
        filename = ""
    filename = clean_text(decode_words(filename), 255) or f"attachment-{index + 1}{_extension(content_type)}"
    if cut_off:
        return InboundAttachment(filename, content_type, email_size,
                                 skipped_reason=f"the email is {megabytes(email_size)}, more than is read of one "
                                                f"email; attachments over {megabytes(cap)} are not kept")
    try:
        content = part.get_payload(decode=True) or b""
    except Exception:
        content = b""
    if isinstance(content, str):
        content = content.encode("utf-8", "replace")
    if len(content) > cap:
        return InboundAttachment(filename, content_type, len(content),
                                 skipped_reason=f"larger than {megabytes(cap)}, not kept")
    return InboundAttachment(filename, content_type, len(content), content=content)


def _extension(content_type: str) -> str:
    return mimetypes.guess_extension(content_type) or ".bin"


def megabytes(count: int) -> str:
    """A size in words: "10 MB", "2.5 MB", "300 KB", "12 bytes"."""
    if count >= 1_000_000:
        value = count / 1_000_000
        return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"
    return f"{count // 1000} KB" if count >= 1000 else f"{count} bytes"


def raw_record(message: EmailMessage, *, uid: int, size: int, cut: bool, body: str,
               attachments: list[InboundAttachment], dropped: int) -> dict[str, Any]:
    """What is kept in Message.raw: the main headers, the whole body as text (quotes included),
    the attachments' names and sizes, and what the parser found wrong."""
    record: dict[str, Any] = {
        "uid": uid, "size": size,
        "headers": {name: value for name in RAW_HEADERS if (value := header(message, name))},
        "body": body[:RAW_BODY_CHARS],
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size,
                         **({"skipped": a.skipped_reason} if a.skipped_reason else {})} for a in attachments],
    }
    defects = [type(defect).__name__ for part in message.walk() for defect in getattr(part, "defects", [])]
    if defects:
        record["defects"] = sorted(set(defects))
    if cut:
        record["cut"] = True
    if dropped:
        record["attachments_dropped"] = dropped
    return record
