"""Files that came with messages: kept content-addressed in Django's default storage.

ingest_messages calls `store_attachments` for the messages it has just created, in its
transaction. Each file lands at attachments/<sha256[:2]>/<sha256>, written before its row is
inserted: a retried ingestion (or the same file in two messages) finds the file already there and
writes nothing twice, and a rolled-back insert leaves at most a file that the next try reuses.
A file that was not kept (too large) gets a row with no file and its `skipped_reason`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from listening.connectors.base import InboundAttachment, InboundMessage
from listening.models import Attachment
from listening.sanitize import clean_text

FILENAME_MAX = 255


def store_attachments(messages: Sequence[InboundMessage], created: Iterable[tuple]) -> int:
    """Store the attachments of the newly created messages (`created`: (pk, external_id, ...)
    rows from the insert). Returns how many rows were written."""
    by_id = {message.external_id: message for message in messages if message.attachments}
    rows = []
    for pk, external_id, *_ in created:
        message = by_id.get(external_id)
        for attachment in message.attachments if message else ():
            rows.append(_row(pk, attachment))
    Attachment.objects.bulk_create(rows)
    return len(rows)


def _row(message_id: int, attachment: InboundAttachment) -> Attachment:
    row = Attachment(
        message_id=message_id,
        filename=safe_filename(attachment.filename),
        content_type=clean_text(attachment.content_type, 127) or "application/octet-stream",
        size=max(0, attachment.size),
        skipped_reason=clean_text(attachment.skipped_reason, 300),
    )
    if attachment.content and not attachment.skipped_reason:
        row.sha256, row.file.name = save_content(attachment.content)
        row.size = len(attachment.content)
    return row


def save_content(content: bytes) -> tuple[str, str]:
    """Write `content` at its content address unless it is there already; (sha256, path)."""
    digest = hashlib.sha256(content).hexdigest()
    path = f"attachments/{digest[:2]}/{digest}"
    if not default_storage.exists(path):
        saved = default_storage.save(path, ContentFile(content))
        if saved != path:  # a concurrent ingestion wrote the same bytes first: keep theirs
            default_storage.delete(saved)
    return digest, path


def safe_filename(name: str) -> str:
    """A name to show and to offer for download: no path, no control characters, bounded."""
    name = clean_text(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|*?:')
    name = name.strip(" .")
    return name[:FILENAME_MAX] or "attachment"


# Types a browser may be told a download is; anything else (HTML, SVG, scripts) is served as
# application/octet-stream, so nothing a customer sent is ever interpreted by the console.
SAFE_DOWNLOAD_TYPES = frozenset({
    "application/pdf", "application/zip", "text/plain", "text/csv", "image/png", "image/jpeg", "image/gif",
    "image/webp", "audio/mpeg", "video/mp4", "application/msword", "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})


def download_content_type(content_type: str) -> str:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind if kind in SAFE_DOWNLOAD_TYPES else "application/octet-stream"
