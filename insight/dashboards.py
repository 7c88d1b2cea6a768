"""The dashboards in one namespace: the filters (insight.filters), every panel's query by name
(from the registry, insight.panels) and the drill-down (insight.drilldown). A convenience for the
views, the API, the tests and the bench; the panels are declared in insight.panels only."""

from insight.drilldown import drilldown
from insight.filters import (
    GRANULARITIES,
    LIST_PARAMS,
    MAX_HOURLY_DAYS,
    SENTIMENTS,
    Filters,
    InvalidFilter,
    can_view,
    known_channels,
    options,
    parse_filters,
)
from insight.panels import PANELS as REGISTRY

# name -> query, in the page's order: what `PANELS[name](filters)` computes.
PANELS = {name: panel.query for name, panel in REGISTRY.items()}
sentiment, volume, intents, emotions, topics, care, recovered = (
    PANELS[name] for name in ("sentiment", "volume", "intents", "emotions", "topics", "care", "recovered"))

__all__ = ["GRANULARITIES", "LIST_PARAMS", "MAX_HOURLY_DAYS", "PANELS", "REGISTRY", "SENTIMENTS", "Filters",
           "InvalidFilter", "can_view", "care", "drilldown", "emotions", "intents", "known_channels", "options",
           "parse_filters", "recovered", "sentiment", "topics", "volume"]
