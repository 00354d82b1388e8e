"""Whether a node is alive: a pure policy over when it was last heard from.

A node that stops talking (frozen, unplugged, its agent killed) is `suspect` after a few missed
heartbeats and `down` a little later; only then are its dynos started elsewhere. A node that comes
back is `ready` again at once, and the dynos it still runs that were replaced are stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

# The `draining` value of a node whose agent stopped deliberately (not 1, an operator's drain):
# such a node is cordoned only until its agent comes back.
DRAINING_LEFT = 2


@dataclass(frozen=True)
class Liveness:
    # Agents send their status every 5 s; two missed ones make a node suspect.
    suspect_after: float = 10.0
    # Then its dynos are replaced: well inside the 30 s users are promised.
    down_after: float = 20.0


def node_state(
    now: float,
    last_heard: float | None,
    *,
    connected: bool,
    cordoned: bool = False,
    draining: bool = False,
    policy: Liveness = Liveness(),
) -> str:
    if last_heard is None:
        return "down"
    silent = now - last_heard
    if silent >= policy.down_after:
        return "down"
    if not connected or silent >= policy.suspect_after:
        return "suspect"
    if draining:
        return "draining"
    if cordoned:
        return "cordoned"
    return "ready"


def schedulable(state: str) -> bool:
    return state == "ready"
