"""Exports of the dashboards: each panel's data as a flat CSV table, a sentence that says what
the filters are, and a PDF made of the snapshot (PNG) the browser composed of the page.

The PNG comes from the browser, so it is untrusted input: only a real PNG of sane size and
dimensions is decoded (`snapshot_image`), anything else is refused with a reason.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone
from fpdf import FPDF
from PIL import Image, UnidentifiedImageError

from learning.models import Lane
from responses.exceptions import InvalidRequest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 15 * 1024 * 1024
MAX_SIDE = 16_000  # pixels; a 2x snapshot of a long dashboard stays well below
MAX_PIXELS = 40_000_000  # ~160 MB decoded: bounds the memory one request can take
MIN_SIDE = 16
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- CSV -----------------------------------------------------------------------------------------


def csv_cell(value):
    """A cell a spreadsheet will not run: text that starts like a formula gets a leading quote
    (numbers are written as numbers, so a negative net score stays a number)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: list[str], rows: Iterable[Iterable]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    return out.getvalue()


def panel_csv(panel, data: dict) -> str:
    """A panel's answer as CSV, with the columns its declaration gives (insight.panels)."""
    header, rows = panel.csv(data)
    return csv_text(header, rows)


# --- What the filters say ------------------------------------------------------------------------


def describe(filters, options: dict) -> str:
    """One line for people: the period, the granularity and every filter that narrows it."""
    names = {
        "connector": {c["id"]: c["name"] for c in options.get("connectors", [])},
        "team": {t["id"]: t["name"] for t in options.get("teams", [])},
        "term": {t["id"]: t["name"] for t in options.get("terms", [])},
        "lane": {value: str(label) for value, label in Lane.choices},  # lanes as people say them
    }
    given: dict[str, list[str]] = {}
    for key, value in filters.given:
        given.setdefault(key, []).append(value)
    parts = [f"{filters.start:%d %b %Y} to {filters.end:%d %b %Y}, by {filters.granularity}"]
    for key, label in (("channel", "channels"), ("connector", "connectors"), ("team", "teams"), ("lane", "lanes"),
                       ("language", "languages"), ("term", "term")):
        values = given.get(key)
        if values:
            lookup = names.get(key, {})
            shown = [lookup.get(int(v), v) if v.isdigit() else lookup.get(v, v) for v in values]
            parts.append(f"{label}: {', '.join(shown)}")
    parts.append(f"compared with the previous {filters.days} days" if filters.compare else "no comparison")
    return " · ".join(parts)


# --- PDF -----------------------------------------------------------------------------------------


def snapshot_image(upload) -> Image.Image:
    """The uploaded snapshot as a decoded image, if it is a PNG of sane size; InvalidRequest
    (400, with the reason) for anything else."""
    if upload is None:
        raise InvalidRequest("attach the snapshot as a PNG file in the field 'image'")
    if upload.size > MAX_PNG_BYTES:
        raise InvalidRequest(f"the image is {upload.size / 1_048_576:.1f} MB; at most 15 MB")
    upload.seek(0)
    if upload.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
        raise InvalidRequest("the image is not a PNG")
    upload.seek(0)
    try:
        with Image.open(upload, formats=["PNG"]) as probe:
            _check_dimensions(*probe.size)
            probe.verify()  # checksums of every chunk, without decoding the pixels
        upload.seek(0)
        image = Image.open(upload, formats=["PNG"])
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(f"the PNG could not be read ({str(exc)[:120] or type(exc).__name__})") from None
    return image.convert("RGB")


def _check_dimensions(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise InvalidRequest(f"the image is {width} x {height} pixels; each side must be {MIN_SIDE} to "
                             f"{MAX_SIDE} pixels and the whole at most {MAX_PIXELS // 1_000_000} megapixels")


def _latin1(text: str) -> str:
    # The PDF's built-in Helvetica covers Latin-1 only; anything else prints as "?" rather than
    # depending on a font file that may not be installed.
    return text.encode("latin-1", "replace").decode("latin-1")


class _SnapshotPDF(FPDF):
    MARGIN = 36  # points

    def footer(self) -> None:
        self.set_y(-24)
        self.set_font("helvetica", size=8)
        self.set_text_color(102, 112, 133)
        self.cell(0, 10, f"Page {self.page_no()}/{{nb}}", align="R")


def snapshot_pdf(image: Image.Image, *, title: str, summary: str, author: str,
                 at: datetime | None = None) -> bytes:
    """An A4 PDF: title, filters and time on the first page, then the image at the page's width,
    cut into page-high slices."""
    at = timezone.localtime(at or timezone.now())
    pdf = _SnapshotPDF(orientation="portrait", unit="pt", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title(_latin1(title))
    pdf.set_author(_latin1(author))
    pdf.set_creator("CXM")
    pdf.set_creation_date(at)
    pdf.alias_nb_pages()
    pdf.add_page()
    margin, width = pdf.MARGIN, pdf.w - 2 * pdf.MARGIN
    pdf.set_xy(margin, margin)
    pdf.set_font("helvetica", "B", 16)
    pdf.multi_cell(width, 20, _latin1(title))
    pdf.set_font("helvetica", size=10)
    pdf.set_text_color(52, 64, 84)
    pdf.set_x(margin)
    pdf.multi_cell(width, 13, _latin1(summary))
    pdf.set_x(margin)
    pdf.multi_cell(width, 13, _latin1(f"Generated {at:%Y-%m-%d %H:%M %Z} by {author}"))
    _place_image(pdf, image, top=pdf.get_y() + 10)
    return bytes(pdf.output())


def _place_image(pdf: _SnapshotPDF, image: Image.Image, top: float) -> None:
    margin, width = pdf.MARGIN, pdf.w - 2 * pdf.MARGIN
    scale = width / image.width  # points per pixel
    bottom = pdf.h - margin
    y_px = 0
    while y_px < image.height:
        if top >= bottom - 40:  # not worth a sliver: start a new page
            pdf.add_page()
            top = margin
        rows = min(image.height - y_px, max(1, int((bottom - top) / scale)))
        part = image.crop((0, y_px, image.width, y_px + rows))
        pdf.image(part, x=margin, y=top, w=width, h=rows * scale)
        y_px += rows
        top = bottom
