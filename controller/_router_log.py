"""Router error codes, their pages, and the per-request log line (Heroku's formats).

Every request to an app is logged to that app's stream (source and dyno `router`):

    at=info method=GET path="/" host=hello.localhost request_id=… fwd="127.0.0.1" dyno=web.1
    connect=1ms service=5ms status=200 bytes=1382 protocol=http

A failed request carries `code=` and `desc=` after `at=error`; fields that have no value (no dyno
was reached) are left empty, as Heroku leaves them. H80 (maintenance) and H27 (the client went
away) are logged `at=info`, as Heroku logs them: neither is the app's fault.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterError:
    code: str
    desc: str
    at: str = "error"


H10 = RouterError("H10", "App crashed")
H12 = RouterError("H12", "Request timeout")
H13 = RouterError("H13", "Connection closed without response")
H14 = RouterError("H14", "No web processes running")
H15 = RouterError("H15", "Idle connection")
H17 = RouterError("H17", "Poorly formatted HTTP response")
H18 = RouterError("H18", "Server Request Interrupted")
H19 = RouterError("H19", "Backend connection timeout")
H20 = RouterError("H20", "App boot timeout")
H27 = RouterError("H27", "Client Request Interrupted", at="info")
H28 = RouterError("H28", "Client Connection Idle")
H80 = RouterError("H80", "Maintenance mode", at="info")
H99 = RouterError("H99", "Platform error")

# HTTP status logged for H27: the client never got a response (nginx's convention, and Heroku's).
CLIENT_CLOSED = 499


def _page(title: str, text: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{title}</title></head>\n<body><h1>{title}</h1>\n<p>{text}</p></body></html>\n"
    ).encode()


APPLICATION_ERROR_PAGE = _page(
    "Application error",
    "An error occurred in the application and your page could not be served. "
    "If you are the application owner, check your logs for details: waka logs --tail",
)
MAINTENANCE_PAGE = _page(
    "Offline for maintenance",
    "This application is undergoing maintenance right now. Please check back later.",
)
NO_SUCH_APP_PAGE = _page("No such app", "There is no app configured at this hostname.")
BAD_REQUEST_PAGE = _page("Bad request", "The request could not be understood.")


def page_for(error: RouterError) -> bytes:
    return MAINTENANCE_PAGE if error is H80 else APPLICATION_ERROR_PAGE


def _ms(value: float | None) -> str:
    return "" if value is None else f"{round(value * 1000)}ms"


def request_line(
    *,
    method: str,
    path: str,
    host: str,
    request_id: str,
    fwd: str,
    dyno: str,
    connect: float | None,
    service: float | None,
    status: int,
    sent: int | None,
    protocol: str,
    error: RouterError | None = None,
) -> str:
    """One router log line; `connect` and `service` in seconds, None when no dyno was reached."""
    prefix = "at=info" if error is None else f'at={error.at} code={error.code} desc="{error.desc}"'
    # A quote in the path would end the field early for anyone parsing the line.
    path = path.replace('"', "%22")
    return (
        f'{prefix} method={method} path="{path}" host={host} request_id={request_id} '
        f'fwd="{fwd}" dyno={dyno} connect={_ms(connect)} service={_ms(service)} '
        f"status={status} bytes={'' if sent is None else sent} protocol={protocol}"
    )
