"""API messages as plain records with stable snake_case fields: what ``--json`` prints.

Times are ISO 8601 strings in UTC (``None`` when never set); enums are Heroku's words.
"""

from __future__ import annotations

from typing import Any

from waka.cli._times import from_timestamp, iso_utc, log_stamp
from waka.v1 import common_pb2, platform_pb2

Record = dict[str, Any]


def enum_word(name: str, prefix: str) -> str:
    """``DYNO_STATE_UP`` -> ``up``; the unspecified value reads ``unknown``."""
    word = name.removeprefix(prefix).lower()
    return "unknown" if word == "unspecified" else word


def dyno_state(state: int) -> str:
    return enum_word(common_pb2.DynoState.Name(state), "DYNO_STATE_")


def build_status(status: int) -> str:
    return enum_word(platform_pb2.BuildStatus.Name(status), "BUILD_STATUS_")


def app_record(app: platform_pb2.App) -> Record:
    return {
        "name": app.name,
        "id": app.id,
        "created_at": iso_utc(from_timestamp(app.created_at)),
        "git_url": app.git_url,
        "web_url": app.web_url,
        "current_release": app.current_release,
        "stack": app.stack,
    }


def dyno_record(dyno: platform_pb2.Dyno) -> Record:
    return {
        "id": dyno.id,
        "name": dyno.name,
        "type": dyno.type,
        "state": dyno_state(dyno.state),
        "release": dyno.release,
        "node": dyno.node,
        "address": dyno.address,
        "command": dyno.command,
        "size": dyno.size,
        "state_changed_at": iso_utc(from_timestamp(dyno.state_changed_at)),
        "message": dyno.message,
        "restarts": dyno.restarts,
    }


def formation_record(entry: platform_pb2.FormationEntry) -> Record:
    return {
        "type": entry.type,
        "quantity": entry.quantity,
        "size": entry.size,
        "command": entry.command,
    }


def release_record(release: platform_pb2.Release) -> Record:
    return {
        "version": release.version,
        "description": release.description,
        "user": release.user,
        "created_at": iso_utc(from_timestamp(release.created_at)),
        "status": release.status,
        "current": release.current,
        "slug_sha256": release.slug_sha256,
        "slug_size": release.slug_size,
        "process_types": dict(sorted(release.process_types.items())),
        "config_names": sorted(release.config_names),
        "buildpacks": list(release.buildpacks),
        "stack": release.stack,
    }


def build_record(build: platform_pb2.Build) -> Record:
    created = from_timestamp(build.created_at)
    finished = from_timestamp(build.finished_at)
    elapsed = (finished - created).total_seconds() if created and finished else None
    return {
        "id": build.id,
        "app": build.app,
        "status": build_status(build.status),
        "source_version": build.source_version,
        "node": build.node,
        "created_at": iso_utc(created),
        "finished_at": iso_utc(finished),
        "duration_seconds": elapsed,
        "release": build.release,
        "slug_sha256": build.slug_sha256,
        "slug_size": build.slug_size,
        "buildpacks": list(build.buildpacks),
        "error": build.error,
    }


def log_record(line: common_pb2.LogLine) -> Record:
    return {
        "time": log_stamp(line.time_us),
        "source": line.source,
        "dyno": line.dyno,
        "app": line.app,
        "text": line.text,
    }
