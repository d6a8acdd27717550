"""The ingest plugins the service knows, in start order: one ``register`` line per built-in.

    from streamdet.service.ingest import plugins
    plugins.register(MY_PLUGIN)                      # before building the Service
    with plugins.registered(MY_PLUGIN): ...          # the same, undone on exit (tests)

``build_ingests(settings)`` creates the adapter of every plugin its settings enable; ``Service`` adds
their routes, and starts and stops them in this order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from streamdet.errors import ConfigError
from streamdet.service.ingest import (
    IngestAdapter,
    IngestPlugin,
    audiosocket,
    broadcast,
    media_ws,
    rtp,
    whip_plugin,
    zmq_pull,
)

if TYPE_CHECKING:
    from streamdet.service.settings import Settings

_PLUGINS: dict[str, IngestPlugin] = {}


def register(plugin: IngestPlugin) -> None:
    """Make ``plugin`` known to services built from now on; a name can be registered once."""
    if plugin.name in _PLUGINS:
        raise ValueError(f"an ingest plugin named {plugin.name!r} is already registered")
    _PLUGINS[plugin.name] = plugin


def unregister(name: str) -> None:
    _PLUGINS.pop(name, None)


@contextmanager
def registered(plugin: IngestPlugin) -> Iterator[IngestPlugin]:
    """``plugin`` registered for the duration of the block."""
    register(plugin)
    try:
        yield plugin
    finally:
        unregister(plugin.name)


def registered_plugins() -> list[IngestPlugin]:
    return list(_PLUGINS.values())


def build_ingests(settings: Settings) -> list[IngestAdapter]:
    """The adapters ``settings`` enable, in registration order; ConfigError for a table in
    ``[ingests]`` that names no registered plugin, or settings a plugin refuses."""
    unknown = sorted(set(settings.ingests) - set(_PLUGINS))
    if unknown:
        raise ConfigError(f"[ingests.{unknown[0]}]: no ingest plugin of that name "
                          f"(registered: {', '.join(_PLUGINS) or 'none'})")
    adapters = []
    for plugin in _PLUGINS.values():
        adapter = plugin.build(settings)
        if adapter is not None:
            adapters.append(adapter)
    return adapters


def split_ingests(settings: Settings) -> set[str]:
    """The plugins whose settings ask for ``split_channels``: the registry scores each channel of
    their multi-channel streams as a stream of its own."""
    return {plugin.name for plugin in _PLUGINS.values()
            if getattr(plugin.section_of(settings), "split_channels", False)}


register(zmq_pull.PLUGIN)
register(whip_plugin.PLUGIN)
register(media_ws.PLUGIN)
register(broadcast.PLUGIN)
register(rtp.PLUGIN)
register(audiosocket.PLUGIN)
