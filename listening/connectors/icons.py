"""Icon shapes the connector classes choose from: SVG path data in a 16x16 box, stroked in white
on the connector's colour (templates/console/includes/channel.html). Named by shape, not by
source, so that a new connector picks one (or brings its own path) in its own module."""

from __future__ import annotations

CHAT = "M3.5 4.5a1 1 0 0 1 1-1h7a1 1 0 0 1 1 1v5a1 1 0 0 1-1 1H7.5l-3 2.5v-2.5a1 1 0 0 1-1-1z"
MAIL = "M3 4.5h10v7H3z M3 4.5l5 4 5-4"
PLANE = "M2.5 7.5 13.5 3l-2.5 10-3.5-3 M13.5 3 7.5 10l-.5 2.5"
PHONE = "M5 2.5h6v11H5z M7.5 11.5h1"
STAR = "M8 2.5l1.7 3.4 3.8.5-2.8 2.6.7 3.7L8 11l-3.4 1.7.7-3.7-2.8-2.6 3.8-.5z"
FEED = "M4 4a8 8 0 0 1 8 8 M4 7.5a4.5 4.5 0 0 1 4.5 4.5 M4.5 11.5h.01"
GLOBE = "M8 2.5a5.5 5.5 0 1 0 0 11a5.5 5.5 0 1 0 0-11 M2.5 8h11 M8 2.5c2 2 2 9 0 11 M8 2.5c-2 2-2 9 0 11"
HASH = "M6.5 3l-1 10 M10.5 3l-1 10 M3.5 6.5h9 M3 9.5h9"
CROSS = "M4 3.5l8 9 M12 3.5l-8 9"
LETTER_M = "M4.5 12V6.5a1.5 1.5 0 0 1 3 0V10 M7.5 10V6.5a1.5 1.5 0 0 1 3 0V12 M10.5 6.5v5.5"
ALIEN = ("M3.5 9.5c0-2 2-3.5 4.5-3.5s4.5 1.5 4.5 3.5S10.5 13 8 13s-4.5-1.5-4.5-3.5z "
         "M8 6l1-3 2.5.5 M6.3 9.5h.01 M9.7 9.5h.01")
CAMERA = "M3.5 4.5h9v8h-9z M8 6.5a2 2 0 1 0 0 4a2 2 0 1 0 0-4 M10.8 5.8h.01"
PLAY = "M5 3l7.5 5L5 13z"
A_MARK = "M5 12.5 8 3.5l3 9 M5.8 10h4.4"
INBOX_TRAY = "M8 3v6.5 M5.5 7 8 9.5 10.5 7 M3 9.5v3h10v-3"
