"""How a log line looks on a drain: an RFC 5424 message in RFC 6587 octet-counting framing.

Exactly as Logplex writes it (logplex_syslog_utils:to_msg and frame/1), for syslog and HTTPS
drains alike:

    LEN SP <PRI>1 TIMESTAMP d.<drain-uuid> SOURCE DYNO - - TEXT LF

HOSTNAME is the drain token (how the receiver tells drains apart), APP-NAME is the line's source
(`app`, `waka`, `router`, `build`), PROCID the dyno (`web.1`, `api`). MSGID and STRUCTURED-DATA
are NILVALUEs. LEN counts the bytes of the message, its final LF included. Logplex writes app
lines as local7, router lines as local3, and its own errors (L10...) as local5.warning; waka's
platform lines take local0.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from waka.v1.common_pb2 import LogLine

SEVERITY_WARNING = 4
SEVERITY_INFO = 6
_FACILITY_BY_SOURCE = {"app": 23, "router": 19}  # local7, local3
_FACILITY_PLATFORM = 16  # local0
_FACILITY_LOGPLEX_ERRORS = 21  # local5

# RFC 5424 header fields: printable US-ASCII, no spaces, bounded length.
_MAX_APP_NAME = 48
_MAX_PROCID = 128
_MAX_HOSTNAME = 255


def priority(line: LogLine) -> int:
    if line.dyno == "logplex" and line.text.startswith("Error L"):
        return _FACILITY_LOGPLEX_ERRORS * 8 + SEVERITY_WARNING
    return _FACILITY_BY_SOURCE.get(line.source, _FACILITY_PLATFORM) * 8 + SEVERITY_INFO


# Formatting is the drains' hot path (every line, for every drain): the few distinct header
# values and the second part of timestamps are cached.


@lru_cache(maxsize=4096)
def header_field(value: str, max_length: int) -> str:
    """A value made fit for a header field: NILVALUE when empty, other bytes replaced by `_`."""
    cleaned = "".join(c if "!" <= c <= "~" else "_" for c in value[:max_length])
    return cleaned or "-"


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp(time_us: int) -> str:
    """RFC 5424 TIMESTAMP with microseconds, in UTC: `2026-11-26T03:01:28.791299+00:00`."""
    seconds, micros = divmod(time_us, 1_000_000)
    return f"{_second(seconds)}.{micros:06d}+00:00"


@lru_cache(maxsize=4096)
def _head_fields(token: str, source: str, dyno: str) -> str:
    return (
        f"{header_field(token, _MAX_HOSTNAME)} {header_field(source, _MAX_APP_NAME)} "
        f"{header_field(dyno, _MAX_PROCID)} - - "
    )


def message(line: LogLine, token: str) -> bytes:
    text = line.text if line.text.endswith("\n") else line.text + "\n"
    return (
        f"<{priority(line)}>1 {timestamp(line.time_us)} "
        f"{_head_fields(token, line.source, line.dyno)}{text}"
    ).encode(errors="replace")


def frame(line: LogLine, token: str) -> bytes:
    body = message(line, token)
    return b"%d %s" % (len(body), body)


def frames(lines: list[LogLine], token: str) -> bytes:
    return b"".join(frame(line, token) for line in lines)
