"""Untrusted HTML (feed entries, email bodies) to plain text.

Built on the standard library's tolerant html.parser: tags are dropped, entities decoded, the
contents of script/style/template elements discarded, and block elements become line breaks.
The result is plain text, inert wherever it is shown, because it is escaped like any other text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose content is never text a person wrote.
_SKIP = {"script", "style", "template", "noscript", "head", "title", "iframe", "object", "svg", "math"}
_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "blockquote", "pre", "section", "article",
    "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "dd", "dt", "figcaption",
}
_SPACES = re.compile(r"[ \t\f\v\r\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment, with paragraphs kept as blank-line-separated lines."""
    if not markup:
        return ""
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    text = "".join(collector.parts)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
