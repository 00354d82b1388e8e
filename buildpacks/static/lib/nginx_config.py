"""Writes the nginx configuration for a static site from its static.json.

    python3 nginx_config.py BUILD_DIR OUTPUT

static.json (optional; the keys of Heroku's static buildpack that make sense here):
  root        directory to serve, relative to the app (default: public/, else public_html/,
              else the app itself)
  clean_urls  true: /about serves about.html
  routes      {"/app/**": "app/index.html"}: paths that serve one file when no file matches
              (single-page apps); `*` matches within a path segment, `**` across segments
  redirects   {"/old": {"url": "/new", "status": 301}}
  headers     {"/assets/**": {"Cache-Control": "public, max-age=31536000"}}
  error_page  "errors/404.html": served with status 404 for missing files
  https_only  true: requests the router marks as plain http (X-Forwarded-Proto) are redirected

The result still has placeholders, @PORT@, @HOME@ and @RUN@ (a directory for nginx's pid file,
temporary files and access-log FIFO), which the web process fills in at start: the port is only
known then. A problem in static.json exits 1 with a message naming it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

KNOWN_KEYS = {"root", "clean_urls", "routes", "redirects", "headers", "error_page", "https_only"}
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
RUN_DIR = "@RUN@"  # the web process's private run directory, under its TMPDIR


class ConfigError(Exception):
    """static.json asks for something that cannot be served; the message says what."""


def glob_to_regex(pattern: str) -> str:
    """Heroku's path globs: `**` any characters, `*` any except `/`; the rest literally."""
    if not pattern.startswith("/"):
        raise ConfigError(f"path {pattern!r} must start with /")
    parts = re.split(r"(\*\*|\*)", pattern)
    regex = "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )
    return f"^{regex}$"


def quote(value: str, *, variables: bool = False) -> str:
    """An nginx string, double-quoted. Where nginx would expand variables (header values, redirect
    targets) a `$` is written as ${dollar}, a variable holding "$"; regexes keep theirs."""
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(f"value {value!r} contains a line break")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if variables:
        escaped = escaped.replace("$", "${dollar}")
    return f'"{escaped}"'


def site_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or ".." in Path(value).parts:
        raise ConfigError(f"{what} must be a path inside the app, not {value!r}")
    return value.strip("/")


def default_root(build_dir: Path) -> str:
    for candidate in ("public", "public_html"):
        if (build_dir / candidate).is_dir():
            return candidate
    return ""


def load(build_dir: Path) -> dict[str, Any]:
    path = build_dir / "static.json"
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"static.json cannot be read: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError("static.json must hold a JSON object")
    return config


def unknown_keys(config: dict[str, Any]) -> list[str]:
    return sorted(set(config) - KNOWN_KEYS)


def render(config: dict[str, Any], root: str) -> str:
    """The nginx.conf for `config`, serving `root` (relative to @HOME@)."""
    clean_urls = config.get("clean_urls", False) is True
    https_only = config.get("https_only", False) is True
    routes = config.get("routes", {})
    redirects = config.get("redirects", {})
    headers = config.get("headers", {})
    for key, value in (("routes", routes), ("redirects", redirects), ("headers", headers)):
        if not isinstance(value, dict):
            raise ConfigError(f"static.json: {key} must be an object")

    # Headers by name: one map per header from the request path to its value. A map (rather
    # than add_header in locations) keeps them independent of which location serves the file;
    # an empty value adds no header.
    header_maps: dict[str, list[tuple[str, str]]] = {}
    for pattern, values in headers.items():
        if not isinstance(values, dict):
            raise ConfigError(f"static.json: headers[{pattern!r}] must be an object")
        regex = glob_to_regex(pattern)[:-1] + r"(\?|$)"
        for name, value in values.items():
            if not HEADER_NAME.match(name) or not isinstance(value, str):
                raise ConfigError(f"static.json: header {name!r}: {value!r} is not valid")
            header_maps.setdefault(name, []).append((regex, value))

    lines = [
        "# Written by waka's static buildpack from static.json; @PORT@, @HOME@ and @RUN@ are",
        "# filled in when the web process starts (.heroku/static/start-nginx).",
        "daemon off;",
        "worker_processes auto;",
        f"pid {RUN_DIR}/nginx.pid;",
        "error_log stderr;",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
        "    include /etc/nginx/mime.types;",
        "    default_type application/octet-stream;",
        "    log_format waka '$remote_addr \"$request\" $status $body_bytes_sent "
        "\"$http_referer\" \"$http_user_agent\" $request_time';",
        # A FIFO that the start script relays to the dyno's stdout (see start-nginx).
        f"    access_log {RUN_DIR}/access.log waka;",
        *(
            f"    {kind}_temp_path {RUN_DIR}/{kind}_temp;"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        "    sendfile on;",
        "    tcp_nopush on;",
        "    keepalive_timeout 65;",
        "    server_tokens off;",
        "    gzip on;",
        "    gzip_min_length 256;",
        "    gzip_types text/css text/plain text/xml application/javascript application/json "
        "image/svg+xml;",
        '    geo $dollar { default "$"; }',
    ]
    for index, (name, entries) in enumerate(sorted(header_maps.items())):
        lines.append(f"    map $request_uri $waka_header_{index} {{")
        lines.append('        default "";')
        lines.extend(f"        {quote('~' + regex)} {quote(value, variables=True)};" for regex, value in entries)
        lines.append("    }")
    lines += [
        "    server {",
        "        listen @PORT@;",
        f"        root @HOME@/{root}".rstrip("/") + ";",
        "        index index.html;",
        # Redirects say /about, not http://<dyno address>/about: the client reached the router.
        "        absolute_redirect off;",
    ]
    for index, (name, _) in enumerate(sorted(header_maps.items())):
        lines.append(f"        add_header {name} $waka_header_{index} always;")
    if https_only:
        lines += [
            '        if ($http_x_forwarded_proto = "http") {',
            "            return 301 https://$host$request_uri;",
            "        }",
        ]
    error_page = config.get("error_page")
    if error_page is not None:
        lines.append(f"        error_page 404 /{site_path(error_page, 'error_page')};")

    for source, target in redirects.items():
        if isinstance(target, str):
            target = {"url": target}
        if not isinstance(target, dict) or not isinstance(target.get("url"), str):
            raise ConfigError(f"static.json: redirects[{source!r}] needs a url")
        status = target.get("status", 301)
        if status not in (301, 302, 303, 307, 308):
            raise ConfigError(f"static.json: redirects[{source!r}] status {status!r} is not a redirect")
        lines.append(f"        location ~ {quote(glob_to_regex(source))} {{")
        lines.append(f"            return {status} {quote(target['url'], variables=True)};")
        lines.append("        }")

    found = "$uri $uri.html $uri/" if clean_urls else "$uri $uri/"
    for pattern, target in routes.items():
        target_path = site_path(target, f"routes[{pattern!r}]")
        lines.append(f"        location ~ {quote(glob_to_regex(pattern))} {{")
        lines.append(f"            try_files {found} /{target_path};")
        lines.append("        }")
    lines += [
        "        location / {",
        f"            try_files {found} =404;",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def main(build_dir: Path, output: Path) -> int:
    try:
        config = load(build_dir)
        root = site_path(config["root"], "root") if "root" in config else default_root(build_dir)
        if not (build_dir / root).is_dir():
            raise ConfigError(f"static.json: root {root!r} is not a directory in the app")
        text = render(config, root)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    for key in unknown_keys(config):
        print(f"static.json: {key!r} is not supported and is ignored", file=sys.stderr)
    output.write_text(text, encoding="utf-8")
    print(root or ".")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: nginx_config.py BUILD_DIR OUTPUT", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
