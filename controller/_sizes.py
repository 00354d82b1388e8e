"""Dyno sizes: Heroku's names and figures, plus a small homelab size."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from waka.controller._errors import InvalidInput
from waka.v1.common_pb2 import DynoSize

DEFAULT_SIZE = "standard-1x"

DEFAULT_SIZES: Mapping[str, DynoSize] = MappingProxyType(
    {
        "mini": DynoSize(name="mini", memory_mb=256, pids=128, cpu_shares=512),
        "standard-1x": DynoSize(name="standard-1x", memory_mb=512, pids=256, cpu_shares=1024),
        "standard-2x": DynoSize(name="standard-2x", memory_mb=1024, pids=512, cpu_shares=2048),
        "performance-m": DynoSize(
            name="performance-m", memory_mb=2560, pids=16384, cpu_shares=4096
        ),
        "performance-l": DynoSize(
            name="performance-l", memory_mb=14336, pids=32768, cpu_shares=8192
        ),
    }
)


def check_size(name: str, sizes: Mapping[str, DynoSize] = DEFAULT_SIZES) -> str:
    normalized = name.strip().lower()
    if normalized not in sizes:
        raise InvalidInput(f"Unknown dyno size {name!r}; sizes are: {', '.join(sizes)}.")
    return normalized
