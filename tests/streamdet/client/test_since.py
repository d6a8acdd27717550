"""``streamdet subscribe --since``: a sequence number, a duration back from now, or an ISO 8601 time."""

from __future__ import annotations

import pytest

from streamdet.client.replay import Since, parse_since
from streamdet.errors import ConfigError


@pytest.mark.parametrize("text, since", [
    ("0", Since(seq=0)),
    ("120", Since(seq=120)),
    ("90s", Since(wall_time=1000.0 - 90)),
    ("15m", Since(wall_time=1000.0 - 900)),
    ("2h", Since(wall_time=1000.0 - 7200)),
    ("1d", Since(wall_time=1000.0 - 86_400)),
    ("2026-12-02T04:00:00Z", Since(wall_time=1796184000.0)),
    ("2026-12-02T05:00:00+01:00", Since(wall_time=1796184000.0)),
])
def test_since_forms(text: str, since: Since) -> None:
    assert parse_since(text, now=1000.0) == since


@pytest.mark.parametrize("text", ["-5", "yesterday", "5 min", "1.5.3"])
def test_anything_else_is_a_one_line_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        parse_since(text)
