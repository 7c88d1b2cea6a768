"""A proactive case's inbox row says why it is there, in words: the rule and what fired it, or who
wrote first and how; the live row (case_row) says the same; rows of other cases are unchanged and
the page costs no query for it when it holds no proactive case."""

from __future__ import annotations

from django.urls import reverse

from responses import proactive
from responses.views.inbox import proactive_reasons, row_queryset, with_rows
from tests.api import test_proactive_api as api_tests
from tests.responses import test_proactive as console_tests
from tests.responses.conftest import open_case
from tests.responses.test_proactive import proactive_case

graph, whatsapp = console_tests.graph, console_tests.whatsapp  # fixtures
ana_wrote = api_tests.ana_wrote


def row_of(client, case) -> str:
    return client.get(reverse("console:case-row", kwargs={"case_id": case.pk})).content.decode()


def test_inbox_row_of_a_rule_opened_case_names_the_rule_and_the_signals(client, whatsapp, agent_a,
                                                                       django_capture_on_commit_callbacks):
    case = proactive_case(django_capture_on_commit_callbacks, whatsapp)
    client.force_login(agent_a)
    inbox = client.get(reverse("console:inbox")).content.decode()
    row = inbox.split(f'id="case-{case.pk}"')[1].split("</tr>")[0]
    assert "Why:</span> Rule “Trouble”: 3 × device error within 1 hour" in row
    assert "Why:" in row_of(client, case)
    with django_capture_on_commit_callbacks(execute=True):
        proactive.send_proactive_message(agent_a, case.pk, template="device_help", values=["Ana", "thermostat"],
                                         key="row-1")
    row = row_of(client, case)
    assert ("Rule “Trouble”: 3 × device error within 1 hour; proactive WhatsApp template “device_help” sent by "
            "Agent") in row


def test_inbox_row_of_a_case_opened_by_a_person_says_who_wrote_first(client, whatsapp, agent_a,
                                                                     django_capture_on_commit_callbacks):
    ana = ana_wrote(whatsapp, 2)
    with django_capture_on_commit_callbacks(execute=True):
        message = proactive.send_to_customer(agent_a, ana.pk, text="We saw your thermostat's errors.", key="row-2")
    client.force_login(agent_a)
    row = row_of(client, message.case)
    assert "Why:</span> Proactive WhatsApp message sent by Agent" in row


def test_inbox_rows_of_other_cases_are_unchanged_and_cost_no_query(connector_a, agent_a, client,
                                                                   django_assert_num_queries):
    case = open_case(connector_a, "My order never arrived")
    cases = list(row_queryset(type(case).objects.filter(pk=case.pk)))
    with django_assert_num_queries(0):
        proactive_reasons(cases)
    assert cases[0].proactive_reason == ""
    client.force_login(agent_a)
    row = row_of(client, case)
    assert "Why:" not in row and "My order never arrived" in row


def test_inbox_reasons_for_a_page_are_two_queries(whatsapp, agent_a, django_capture_on_commit_callbacks,
                                                  django_assert_num_queries):
    first = proactive_case(django_capture_on_commit_callbacks, whatsapp)
    cases = with_rows(row_queryset(type(first).objects.all()))
    with django_assert_num_queries(2):
        proactive_reasons(cases)
    assert [c.proactive_reason for c in cases if c.pk == first.pk][0].startswith("Rule “Trouble”")
