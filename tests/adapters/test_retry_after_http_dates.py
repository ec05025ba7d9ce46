"""A retry-after HTTP date written without a zone (-0000) is read as GMT."""

from __future__ import annotations

import time

from compactor.adapters import parse_retry_after


def test_http_date_without_a_zone_is_gmt(monkeypatch):
    """An HTTP date written with ``-0000`` (no zone) is read as GMT, whatever the local
    time zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = 1_700_000_000.0
        ra = time.strftime("%a, %d %b %Y %H:%M:%S -0000", time.gmtime(now + 30))
        assert 29 <= parse_retry_after({"retry-after": ra}, now=now) <= 31
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
