"""How times read: Heroku's ``2026/11/26 03:01:28 +0000 (~ 5m ago)``, log stamps, JSON.

Everything is shown in UTC so output is the same on every machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampLike(Protocol):
    """A protobuf ``google.protobuf.Timestamp`` (kept structural so this module stays light)."""

    seconds: int
    nanos: int


def from_timestamp(timestamp: TimestampLike) -> datetime | None:
    """The time a protobuf Timestamp holds, or None when it was never set."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return None
    return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1000)


def from_micros(time_us: int) -> datetime:
    # Integer arithmetic: a float of microseconds since 1970 loses the last digit.
    return _EPOCH + timedelta(microseconds=time_us)


def iso_utc(moment: datetime | None) -> str | None:
    """``2026-11-26T03:01:28.791299+00:00``: the one time format of every ``--json`` output."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def log_stamp(time_us: int) -> str:
    """The stamp that starts a log line, as Logplex writes it."""
    return from_micros(time_us).isoformat(timespec="microseconds")


def ago(moment: datetime, now: datetime) -> str:
    """``~ 5m ago``: the elapsed time in its largest whole unit."""
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return f"~ {seconds}s ago"
    if seconds < 3600:
        return f"~ {seconds // 60}m ago"
    if seconds < 86400:
        return f"~ {seconds // 3600}h ago"
    return f"~ {seconds // 86400}d ago"


def heroku_time(moment: datetime | None, now: datetime) -> str:
    """``2026/11/26 03:01:28 +0000 (~ 5m ago)``, or ``unknown`` for a time never set."""
    if moment is None:
        return "unknown"
    return f"{moment.astimezone(UTC):%Y/%m/%d %H:%M:%S %z} ({ago(moment, now)})"


def duration(seconds: float) -> str:
    """``45s``, ``1m 05s``, ``2h 03m``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
