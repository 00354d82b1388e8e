"""The router's Prometheus metrics: requests by app and status, errors by code, a latency histogram.

Counting is a few dict operations per request; the text exposition format is produced only when
`/metrics` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

# Seconds; the last finite bucket is the H12 timeout, so slower requests are the `+Inf` ones.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0


class RouterMetrics:
    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._in_flight: dict[str, int] = {}
        self.unknown_host = 0

    def started(self, app: str) -> None:
        self._in_flight[app] = self._in_flight.get(app, 0) + 1

    def finished(
        self, app: str, status: int, seconds: float, error_code: str | None = None
    ) -> None:
        """Counts one request that `started`; `seconds` from its head to its end."""
        self._in_flight[app] -= 1
        key = (app, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        if error_code is not None:
            error_key = (app, error_code)
            self._errors[error_key] = self._errors.get(error_key, 0) + 1
        histogram = self._latency.get(app)
        if histogram is None:
            histogram = self._latency[app] = _Histogram()
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def forget(self, app: str) -> None:
        """Drops the series of a destroyed app."""
        for table in (self._requests, self._errors):
            for key in [k for k in table if k[0] == app]:
                del table[key]
        self._latency.pop(app, None)
        if not self._in_flight.get(app):
            self._in_flight.pop(app, None)

    def render(self, backends_in_flight: Mapping[str, int] | None = None) -> str:
        out: list[str] = []
        add = out.append
        add("# HELP waka_router_requests_total Requests routed to apps, by final status.")
        add("# TYPE waka_router_requests_total counter")
        for (app, status), count in sorted(self._requests.items()):
            add(f'waka_router_requests_total{{app="{_label(app)}",status="{status}"}} {count}')
        add("# HELP waka_router_errors_total Router errors (H codes), by app and code.")
        add("# TYPE waka_router_errors_total counter")
        for (app, code), count in sorted(self._errors.items()):
            add(f'waka_router_errors_total{{app="{_label(app)}",code="{code}"}} {count}')
        add("# HELP waka_router_request_duration_seconds Time from request head to response end.")
        add("# TYPE waka_router_request_duration_seconds histogram")
        for app, histogram in sorted(self._latency.items()):
            label = _label(app)
            cumulative = 0
            for bound, count in zip((*BUCKETS, "+Inf"), histogram.counts, strict=True):
                cumulative += count
                add(
                    f'waka_router_request_duration_seconds_bucket{{app="{label}",le="{bound}"}} '
                    f"{cumulative}"
                )
            add(f'waka_router_request_duration_seconds_sum{{app="{label}"}} {histogram.sum!r}')
            add(f'waka_router_request_duration_seconds_count{{app="{label}"}} {cumulative}')
        add("# HELP waka_router_requests_in_flight Requests being served, by app.")
        add("# TYPE waka_router_requests_in_flight gauge")
        for app, count in sorted(self._in_flight.items()):
            add(f'waka_router_requests_in_flight{{app="{_label(app)}"}} {count}')
        add("# HELP waka_router_backend_in_flight Requests open on each dyno address.")
        add("# TYPE waka_router_backend_in_flight gauge")
        for address, count in sorted((backends_in_flight or {}).items()):
            add(f'waka_router_backend_in_flight{{address="{_label(address)}"}} {count}')
        add("# HELP waka_router_unknown_host_total Requests for hosts that are no app's.")
        add("# TYPE waka_router_unknown_host_total counter")
        add(f"waka_router_unknown_host_total {self.unknown_host}")
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
