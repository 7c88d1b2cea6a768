"""Dashboard panels, one registry (insight.panels.registry). Every module of this package is
imported here, so a new panel module declares itself by calling `register` and needs no list."""

import importlib
import pkgutil

from insight.panels.registry import PANELS, Panel, register, renderers

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PANELS", "Panel", "register", "renderers"]
