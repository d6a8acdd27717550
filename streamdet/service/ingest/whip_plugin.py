"""The WHIP ingest as a plugin: settings ``[whip]``, on the HTTP port (so only with ``http`` on).

Apart from ``whip.py`` because that module loads aiortc (seconds of imports): a service without
WHIP never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamdet.service.ingest import IngestAdapter, IngestPlugin
from streamdet.service.settings import WhipSettings

if TYPE_CHECKING:
    from streamdet.service.settings import Settings


def create(section: WhipSettings, settings: Settings) -> IngestAdapter | None:
    if not (section.enabled and settings.http.enabled):
        return None
    from streamdet.service.ingest.whip import WhipIngest

    return WhipIngest(section)


PLUGIN = IngestPlugin("whip", WhipSettings, create, section="whip")
