from responses.models import Case, CaseStatus, ConsoleEvent
from tests.responses.conftest import open_case


def test_routing_opens_a_case_in_the_lane_queue_and_assigns_it(connector_a, agent_a):
    case = open_case(connector_a)
    assert case.team.slug == "team-a"
    assert case.queue.slug == "care"
    assert case.status == CaseStatus.OPEN
    assert case.assignee == agent_a
    assert case.sla_due_at is not None
    types = list(ConsoleEvent.objects.filter(case=case).values_list("type", flat=True))
    assert "message.created" in types and "case.created" in types
    assert Case.objects.count() == 1
