"""The panel registry: every dashboard panel is declared once, here, by the module that computes
it. The dashboard page, the JSON and CSV answers, the API, the JavaScript (which draws a panel with
the renderer its declaration names, handed over with json_script), the tests and the bench read
the panels from `PANELS`; nothing else lists them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from insight.filters import Filters

CsvTable = tuple[list[str], list[list]]


@dataclass(frozen=True)
class Panel:
    name: str  # the URL's and the API's name for it
    title: str  # the heading people read
    about: str  # one line under the title: what it answers
    query: Callable[[Filters], dict]  # the figures, from rollups or indexed rows
    csv: Callable[[dict], CsvTable]  # the query's answer as one flat table: (header, rows)
    renderer: str  # a key of RENDER in static/insight/insight.js
    # Its reference computed straight from the raw tables (bench/insight_raw.py, by this name):
    # tests check the query against it and the bench times the query against it.
    raw: str = ""
    order: int = 100  # place on the page, smallest first

    @property
    def raw_name(self) -> str:
        return self.raw or self.name


PANELS: dict[str, Panel] = {}


def register(panel: Panel) -> Panel:
    if panel.name in PANELS:
        raise ValueError(f"two panels are named {panel.name!r}")
    PANELS[panel.name] = panel
    # Keep the page's order: a dict iterates in insertion order.
    for name in sorted(PANELS, key=lambda n: (PANELS[n].order, n)):
        PANELS[name] = PANELS.pop(name)
    return panel


def renderers() -> dict[str, str]:
    """What the page hands the JavaScript: each panel's renderer."""
    return {panel.name: panel.renderer for panel in PANELS.values()}
