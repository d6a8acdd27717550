"""ICE set-up shared by the WHIP endpoint and the WHIP client: host candidates only, chosen addresses.

aiortc gathers its ICE candidates through aioice, which offers every interface's address except
loopback and has no per-connection option to choose. ``use_host_addresses`` replaces aioice's
address lookup, process-wide, so that a service (or a test) can offer ``127.0.0.1`` only, or only the
address a firewall lets through. ``rtc_configuration`` gives a configuration with no ICE servers:
aiortc's default would query Google's public STUN server, which a monitoring service must not do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration

_original_lookup: Callable[..., list[str]] = aioice.ice.get_host_addresses
_addresses: list[str] | None = None


def _lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _addresses is None:
        return _original_lookup(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in _addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def use_host_addresses(addresses: Sequence[str] | None) -> None:
    """Offer exactly ``addresses`` as host candidates from now on (None or empty: aioice's default).

    Process-wide: every RTCPeerConnection created afterwards in this process is affected.
    """
    global _addresses
    _addresses = list(addresses) if addresses else None
    aioice.ice.get_host_addresses = _lookup


def host_addresses() -> list[str] | None:
    """The addresses in force (None: aioice's default)."""
    return None if _addresses is None else list(_addresses)


def rtc_configuration() -> RTCConfiguration:
    """Host candidates only: no STUN, no TURN."""
    return RTCConfiguration(iceServers=[])
