"""Sending a proactive message from a case page: a thin shell over responses.proactive. JSON
answers for fetch; a plain form goes back to the case, where the timeline shows what was sent."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from responses import proactive
from responses.exceptions import InvalidRequest
from responses.summaries import reply_dict
from responses.views.base import body, console_view, done, object_id, text

MAX_VALUES = 10


def _values(data: dict) -> list[str]:
    """The template's values: a JSON list, or the form's value_1, value_2... fields."""
    values = data.get("values")
    if values is None:
        values = []
        for number in range(1, MAX_VALUES + 1):
            if f"value_{number}" not in data:
                break
            values.append(text(data, f"value_{number}", required=False, max_chars=200))
    if not isinstance(values, list) or len(values) > MAX_VALUES or not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"values must be a list of up to {MAX_VALUES} texts")
    return values


@console_view("POST")
def case_proactive(request: HttpRequest, case_id: str) -> HttpResponse:
    data = body(request)
    template = text(data, "template", required=False, max_chars=600)
    message = proactive.send_proactive_message(
        request.user, object_id(case_id), text=text(data, "text", required=False, max_chars=40_000),
        template=template, values=_values(data) if template else None,
        key=text(data, "key", max_chars=64))
    return done(request, {"proactive": {"id": message.pk, "template": message.template_name,
                                        "reply": reply_dict(message.reply)}},
                reverse("console:case", kwargs={"case_id": message.case_id}))
