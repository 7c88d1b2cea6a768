"""Files that came with a customer's message, downloaded from the case they belong to.

The case decides: a user who cannot see the case gets the same 404 as for a missing file. The
file always downloads (Content-Disposition: attachment) with nosniff and a type from a short list
of harmless ones, so a customer's HTML or SVG can never run in the console's origin.
"""

from __future__ import annotations

from django.http import FileResponse, HttpRequest

from listening.attachments import download_content_type
from listening.models import Attachment
from responses import access
from responses.exceptions import CaseNotFound
from responses.views.base import console_view, object_id


@console_view("GET")
def case_attachment(request: HttpRequest, case_id: str, attachment_id: str) -> FileResponse:
    case = access.get_case(request.user, object_id(case_id))
    attachment = (Attachment.objects.filter(pk=object_id(attachment_id, "attachment"),
                                            message__conversation_id=case.conversation_id)
                  .exclude(file="").first())
    if attachment is None:
        raise CaseNotFound("no such attachment")
    try:
        handle = attachment.file.open("rb")
    except OSError:  # the storage lost it: as good as missing
        raise CaseNotFound("the attachment's file is missing from storage") from None
    response = FileResponse(handle, as_attachment=True, filename=attachment.filename,
                            content_type=download_content_type(attachment.content_type))
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
