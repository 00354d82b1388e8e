"""The waka controller: gRPC API, SQLite state, scheduler, builds, slugs, git endpoint, logs.

Public surface: `ControllerConfig`, `run_controller` (a trio task; `nursery.start` returns a
`Running` with the bound addresses and tokens); `trusted_networks` checks `--trusted-proxy`.
"""

from waka.controller._deploys import BuildLimits
from waka.controller._router import trusted_networks
from waka.controller._server import ControllerConfig, Running, run_controller

__all__ = ["BuildLimits", "ControllerConfig", "Running", "run_controller", "trusted_networks"]
