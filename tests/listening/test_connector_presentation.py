"""Connector classes carry their presentation (label, icon, colour, description, channels), and
no other file lists connector kinds or channels: a new connector touches its own module only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from listening.connectors import channel_presentations, connector_kinds, get_connector_class, presentation

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("cxm", "listening", "learning", "responses", "insight", "templates", "static")
SUFFIXES = {".py", ".html", ".js", ".css"}
# Words that are also ordinary field names or English ("email", "import", "web"): a file naming
# them says nothing about connector kinds, so only the distinctive names are looked for.
COMMON = {"email", "import", "web", "api", "chat", "x", "feed", "sms"}
AT_MOST = 2  # a file may name a kind or two (a kind's own command, a test fixture); three is a list
COLOUR = re.compile(r"^#[0-9a-f]{6}$")


def test_every_connector_kind_declares_how_it_looks():
    for kind in connector_kinds():
        cls = get_connector_class(kind)
        assert presentation(kind).kind == kind  # the kind's own, or that of its channel of the same name
        assert cls.description and cls.label, kind
        assert COLOUR.match(cls.colour), kind
        assert cls.icon.startswith("M"), kind  # SVG path data
        assert cls.channels, f"{kind} declares no channels"
        for channel in cls.channels:
            assert channel.label and channel.label != channel.key, (kind, channel)  # a name, not the slug


def test_channels_read_as_names_with_their_connectors_look():
    assert presentation("whatsapp").label == "WhatsApp"
    assert presentation("web").label == "Website"
    assert presentation("x_dm").kind == "x"
    names = {p.key: p.label for p in channel_presentations()}
    assert names["telegram"] == "Telegram" and names["app_review"] == "App review"


@pytest.mark.parametrize("key, label", [("weird_thing", "Weird thing"), ("", "Unknown channel"),
                                        ("<script>", "<script>")])
def test_a_channel_no_connector_declares_still_reads_as_words(key, label):
    look = presentation(key)
    assert look.label == label and COLOUR.match(look.colour) and look.kind == ""


def _named_kinds(text: str, names: set[str]) -> set[str]:
    quoted = set(re.findall(r"""["'](\w+)["']""", text))
    css = set(re.findall(r"\bch-(\w+)", text))
    return (quoted | css) & names


def test_no_file_outside_the_connectors_lists_connector_kinds():
    names = set(connector_kinds()) | {p.key for p in channel_presentations()}
    names -= COMMON
    listing = {}
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if (path.suffix not in SUFFIXES or relative.startswith("listening/connectors/")
                    or "/migrations/" in relative or not path.is_file()):
                continue
            found = _named_kinds(path.read_text(encoding="utf-8", errors="replace"), names)
            if len(found) > AT_MOST:
                listing[relative] = sorted(found)
    assert not listing, f"these files list connector kinds or channels; ask listening.connectors instead: {listing}"


def test_the_check_catches_a_list_of_kinds():
    """The check above is only worth something if it sees a list like the old CHANNEL_ICONS."""
    names = set(connector_kinds()) - COMMON
    old = 'ICONS = {"telegram": "TG", "whatsapp": "WA", "mastodon": "MAS"}\n.ch-reddit { color: red }'
    assert len(_named_kinds(old, names | {"whatsapp"})) > AT_MOST
