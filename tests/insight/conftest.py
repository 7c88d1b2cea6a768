"""Insight's tests use Love's personas (an agent, a supervisor and a brand manager on team A, an
outsider on team B, an admin): the same fixtures, imported so pytest finds them here too."""

from tests.responses.conftest import (  # noqa: F401 - fixtures
    admin_user,
    agent_a,
    agent_a2,
    agent_b,
    connector_a,
    connector_b,
    manager_a,
    settings_no_classify,
    supervisor_a,
    team_a,
    team_b,
)
