"""Message templates a provider approved in advance (WhatsApp's): the only first message such a
channel lets a business send outside its customer-service window.

A connector that has them lists them in its config under `templates`, one per line as
`name | language | body`, the body numbering its parameters {{1}}, {{2}}... as the provider does:

    device_help | en | Hi {{1}}, your {{2}} reported errors. Reply here and we will help.

The body is what people read in the console (and on the case timeline, filled in); the provider
only receives the name, the language and the parameter values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from listening.exceptions import ConfigInvalid

NAME_RE = re.compile(r"[a-z0-9_]{1,512}")  # WhatsApp: lower-case letters, digits and underscores
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")  # en, en_US, pt_BR
PARAM_RE = re.compile(r"\{\{(\d{1,2})\}\}")
MAX_TEMPLATES = 50
MAX_BODY = 1024  # WhatsApp's limit for a template body
MAX_PARAM_CHARS = 200


@dataclass(frozen=True)
class MessageTemplate:
    name: str
    language: str
    text: str

    @property
    def params(self) -> int:
        """How many parameters the body takes ({{1}} to {{n}})."""
        return max((int(n) for n in PARAM_RE.findall(self.text)), default=0)

    @property
    def key(self) -> str:
        return f"{self.name}:{self.language}"

    def render(self, values: tuple[str, ...] | list[str]) -> str:
        """The body with the values in place, as the customer reads it."""
        return PARAM_RE.sub(lambda m: values[int(m.group(1)) - 1] if int(m.group(1)) <= len(values) else m.group(0),
                            self.text)

    def check_values(self, values: Any) -> tuple[str, ...]:
        """The parameter values as the provider wants them, or ValueError with the reason."""
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise ValueError("the template's values must be a list of texts")
        cleaned = tuple(" ".join(v.split()) for v in values)  # providers refuse newlines and tabs in parameters
        if len(cleaned) != self.params:
            raise ValueError(f"the template {self.name} takes {self.params} value(s), not {len(cleaned)}")
        for number, value in enumerate(cleaned, 1):
            if not value:
                raise ValueError(f"value {{{{{number}}}}} of the template {self.name} is empty")
            if len(value) > MAX_PARAM_CHARS:
                raise ValueError(f"value {{{{{number}}}}} is {len(value)} characters; at most {MAX_PARAM_CHARS}")
        return cleaned


def parse_templates(value: Any) -> tuple[MessageTemplate, ...]:
    """The templates of a connector's config (lines or {"name", "language", "text"} objects), or
    ConfigInvalid naming the bad one."""
    if value in (None, "", []):
        return ()
    if not isinstance(value, list):
        raise ConfigInvalid("templates must be a list, one per line: name | language | body")
    if len(value) > MAX_TEMPLATES:
        raise ConfigInvalid(f"at most {MAX_TEMPLATES} templates")
    found: dict[str, MessageTemplate] = {}
    for number, item in enumerate(value, 1):
        if isinstance(item, dict):
            parts = [item.get("name"), item.get("language"), item.get("text")]
        elif isinstance(item, str):
            parts = [part.strip() for part in item.split("|", 2)]
        else:
            parts = []
        if len(parts) != 3 or not all(isinstance(part, str) and part for part in parts):
            raise ConfigInvalid(f"template {number}: write it as name | language | body")
        name, language, text = parts
        if not NAME_RE.fullmatch(name):
            raise ConfigInvalid(f"template {number}: the name is lower-case letters, digits and underscores")
        if not LANGUAGE_RE.fullmatch(language):
            raise ConfigInvalid(f"template {number}: the language is a code like en or pt_BR")
        if len(text) > MAX_BODY:
            raise ConfigInvalid(f"template {number}: the body is at most {MAX_BODY} characters")
        template = MessageTemplate(name, language, text)
        used = sorted({int(n) for n in PARAM_RE.findall(text)})
        if used != list(range(1, len(used) + 1)):
            raise ConfigInvalid(f"template {number}: number its values {{{{1}}}}, {{{{2}}}}... without gaps")
        if template.key in found:
            raise ConfigInvalid(f"template {number}: {name} in {language} is listed twice")
        found[template.key] = template
    return tuple(found.values())
